#!/usr/bin/env bash
# Dashboard-query benchmark: `queue(serviceId, date)` — one service's board of 50 tickets with
# client, staff and service — on PostgreSQL holding 10,000 queue entries, against two baselines,
# side by side in each round (see shared/design/PERFORMANCE.md: ratios within one run, not
# absolute numbers):
#   gqlbase      bare async-graphql answering the same query with the same JSON from memory
#                (bench/gqlbase): async-graphql's ceiling for the shape
#   postgraphile PostGraphile 5 over the same database, asked the equivalent question (first 50
#                queue entries of the service and day with client name and phone, staff, service)
# then medians and the ratios gateway/gqlbase (target ≥ 0.6) and gateway/postgraphile (≥ 5).
#
# The database is made by the gateway's migrations and filled by bench/seed (the gateway's own
# verify → map → group-commit writer, without HTTP): 10,000 tickets, one delivery each, 50 per
# service and clinic-local day over 20 services and 10 days. The board asked for is service
# "200" on the last day, 2024-01-16.
#
# usage: bench/run-query.sh
# env:   ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=2 TICKETS=10000
#        PG_URL=postgres://postgres@127.0.0.1:5432  (server; the script creates and drops its database)
#        CAREBRIDGE_BIN=path  (measure another build of the gateway)
#        SKIP_BUILD=1         (use the existing release binaries)
#        SKIP_POSTGRAPHILE=1  (no PostGraphile: e.g. without Node.js)
#        FORGET_MIGRATIONS="m2026…"  (with an older CAREBRIDGE_BIN: see below)
# Every process it starts is stopped by its PID; the database it creates is dropped.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
TICKETS="${TICKETS:-10000}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
SECRET="bench-chup-secret-0123456789abcdef"
API_KEY="bench-api-key-0123456789abcdef"
BASE_ADDR="${BASE_ADDR:-127.0.0.1:18173}"
GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:18172}"
PGL_PORT="${PGL_PORT:-18174}"
DAY="2024-01-16"

command -v wrk >/dev/null || { echo "wrk missing: apt-get update && apt-get install -y wrk" >&2; exit 1; }

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$HERE/out/query"
mkdir -p "$OUT"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p carebridge -p carebridge-bench-gqlbase -p carebridge-bench-seed)
fi
BASE_BIN="$TARGET/release/carebridge-bench-gqlbase"
SEED_BIN="$TARGET/release/carebridge-bench-seed"
GATEWAY_BIN="${CAREBRIDGE_BIN:-$TARGET/release/carebridge}"
if [[ -z "${SKIP_POSTGRAPHILE:-}" && ! -d "$HERE/postgraphile/node_modules/postgraphile" ]]; then
  (cd "$HERE/postgraphile" && npm ci --no-audit --no-fund --loglevel=error)
fi

PIDS=()
DB="carebridge_query_$$"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_ready() { # url
  for _ in $(seq 1 400); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "server at $1 did not become ready" >&2; return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# Runs wrk against $1 (base URL) with body file $2 while process $3 serves;
# prints "rps p50_ms p99_ms non2xx server_cores rss_mb".
load() {
  local url="$1" body="$2" pid="$3" log="$4" before after
  before=$(cpu_ticks "$pid")
  # PostGraphile has no API keys (a bearer token there is a JWT it would try to verify).
  local key="$API_KEY"; [[ "$body" == *postgraphile* ]] && key=""
  QUERY_BODY="$body" API_KEY="$key" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$HERE/query.lua" "$url" >"$log" 2>&1
  after=$(cpu_ticks "$pid")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" -v dur="${DURATION%s}" -v rss="$(rss_mb "$pid")" '
    function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v }
                     if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    /Socket errors/ { bad += 0 }
    END { printf "%.0f %.2f %.2f %d %.2f %d\n", rps, p50, p99, bad + 0, ticks / hz / dur, rss }' "$log"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- the database: migrations by the gateway, history by the seeder ----
psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB" >/dev/null
cat >"$OUT/bench.toml" <<TOML
listen = "$GATEWAY_ADDR"
database_url = "$PG_URL/$DB"
[[sources]]
id = "chup-main"
vendor = "chup"
secret = "$SECRET"
[[api_keys]]
name = "bench"
key = "$API_KEY"
scopes = ["read"]
TOML
"$GATEWAY_BIN" --config "$OUT/bench.toml" migrate 2>"$OUT/migrate.log"
"$SEED_BIN" --config "$OUT/bench.toml" --source chup-main --secret "$SECRET" \
  --tickets "$TICKETS" --updates 1 --per-day 50 --last-day "$DAY" 2>"$OUT/seed.log" | tee -a "$OUT/seed.log"
# An older CAREBRIDGE_BIN refuses a database that holds migrations it does not know (the seeder
# is built from this tree): FORGET_MIGRATIONS="name …" removes their rows (the schema they
# added stays, which an older build ignores).
for migration in ${FORGET_MIGRATIONS:-}; do
  psql "$PG_URL/$DB" -qc "DELETE FROM seaql_migrations WHERE version = '$migration'" >/dev/null
done
psql "$PG_URL/$DB" -qc "VACUUM ANALYZE" >/dev/null
entries=$(psql "$PG_URL/$DB" -tAc "SELECT count(*) FROM queue_entries")
service=$(psql "$PG_URL/$DB" -tAc "SELECT id FROM services WHERE vendor_id = '200'")
echo "database: $entries queue entries; board: Service:$service on $DAY"

# ---- the query, as each server is asked it ----
QUERY='query Board($service: ID!, $date: NaiveDate!) { queue(serviceId: $service, date: $date) { id vendorId state { kind rawCode label } queueDate joinedAt client { id name phone } staff { id name } service { id name } } }'
jq -cn --arg q "$QUERY" --arg s "Service:$service" --arg d "$DAY" \
  '{query: $q, variables: {service: $s, date: $d}, operationName: "Board"}' >"$OUT/query.json"
PGL_QUERY='query Board($service: BigInt!, $date: Date!) { allQueueEntries(condition: {serviceId: $service, queueDate: $date, deleted: false}, orderBy: [VENDOR_CREATED_AT_ASC, ROW_ID_ASC], first: 50) { nodes { id vendorId state stateCode stateLabel queueDate vendorCreatedAt clientByClientId { id fullName phone } staffByStaffId { id name } serviceByServiceId { id name } } } }'
jq -cn --arg q "$PGL_QUERY" --arg s "$service" --arg d "$DAY" \
  '{query: $q, variables: {service: $s, date: $d}, operationName: "Board"}' >"$OUT/query-postgraphile.json"

ask() { # url body-file answer-file [api-key]
  curl -fs -H 'Content-Type: application/json' ${4:+-H "Authorization: Bearer $4"} \
    --data-binary "@$2" "$1/graphql" >"$3"
}

start_gateway() {
  "$GATEWAY_BIN" --config "$OUT/bench.toml" --log-format json serve >"$OUT/gateway.log" 2>&1 &
  GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
  wait_ready "http://$GATEWAY_ADDR/healthz"
}
start_gateway
ask "http://$GATEWAY_ADDR" "$OUT/query.json" "$OUT/answer-gateway.json" "$API_KEY"
n=$(jq '.data.queue | length' "$OUT/answer-gateway.json")
[[ "$n" == 50 ]] || { echo "the gateway's board has $n entries, not 50:" >&2; head -c 600 "$OUT/answer-gateway.json" >&2; exit 1; }

"$BASE_BIN" "$BASE_ADDR" "$OUT/answer-gateway.json" >"$OUT/gqlbase.log" 2>&1 &
BASE_PID=$!; PIDS+=("$BASE_PID")
wait_ready "http://$BASE_ADDR/hello"
ask "http://$BASE_ADDR" "$OUT/query.json" "$OUT/answer-gqlbase.json" "$API_KEY"
# Same values and the same number of bytes (key order may differ: GraphQL answers in the
# query's order, serde_json::Value in alphabetical order).
cmp -s <(jq -S . "$OUT/answer-gateway.json") <(jq -S . "$OUT/answer-gqlbase.json") \
  && [[ $(wc -c <"$OUT/answer-gateway.json") == $(wc -c <"$OUT/answer-gqlbase.json") ]] \
  || { echo "gqlbase does not answer with the gateway's values and size" >&2; exit 1; }
echo "answer: $(wc -c <"$OUT/answer-gateway.json") bytes, the same values from gateway and gqlbase"

SERVERS=(gqlbase gateway)
if [[ -z "${SKIP_POSTGRAPHILE:-}" ]]; then
  (cd "$HERE/postgraphile" && exec env DATABASE_URL="$PG_URL/$DB" PORT="$PGL_PORT" NODE_ENV=production \
    node --import ./node20-shims.mjs node_modules/postgraphile/dist/cli-run.js --config graphile.config.mjs) >"$OUT/postgraphile.log" 2>&1 &
  PGL_PID=$!; PIDS+=("$PGL_PID")
  for _ in $(seq 1 300); do ask "http://127.0.0.1:$PGL_PORT" "$OUT/query-postgraphile.json" "$OUT/answer-postgraphile.json" 2>/dev/null && break; sleep 0.1; done
  n=$(jq '.data.allQueueEntries.nodes | length' "$OUT/answer-postgraphile.json")
  [[ "$n" == 50 ]] || { echo "PostGraphile's board has $n entries, not 50:" >&2; head -c 600 "$OUT/answer-postgraphile.json" >&2; exit 1; }
  echo "postgraphile answer: $(wc -c <"$OUT/answer-postgraphile.json") bytes; idle RSS $(rss_mb "$PGL_PID") MB"
  SERVERS+=(postgraphile)
fi
echo "gateway idle RSS $(rss_mb "$GATEWAY_PID") MB, gqlbase $(rss_mb "$BASE_PID") MB"

url_of() { case "$1" in gqlbase) echo "http://$BASE_ADDR" ;; gateway) echo "http://$GATEWAY_ADDR" ;; postgraphile) echo "http://127.0.0.1:$PGL_PORT" ;; esac; }
body_of() { case "$1" in postgraphile) echo "$OUT/query-postgraphile.json" ;; *) echo "$OUT/query.json" ;; esac; }
pid_of() { case "$1" in gqlbase) echo "$BASE_PID" ;; gateway) echo "$GATEWAY_PID" ;; postgraphile) echo "$PGL_PID" ;; esac; }

# Warm-up (JIT, pools, caches), not measured.
for s in "${SERVERS[@]}"; do
  key="$API_KEY"; [[ "$s" == postgraphile ]] && key=""
  QUERY_BODY="$(body_of "$s")" API_KEY="$key" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$HERE/query.lua" "$(url_of "$s")" >/dev/null 2>&1
done

echo "query benchmark: rounds=$ROUNDS wrk -t$THREADS -c$CONNECTIONS -d$DURATION; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "gateway binary: $GATEWAY_BIN"
printf "%-6s %-13s %9s %8s %8s %7s %12s %7s\n" round server "req/s" "p50(ms)" "p99(ms)" non2xx "server-cores" "RSS(MB)"
for s in "${SERVERS[@]}"; do : >"$OUT/$s.rps"; : >"$OUT/$s.p50"; : >"$OUT/$s.p99"; : >"$OUT/$s.rss"; done
for round in $(seq 1 "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    read -r rps p50 p99 bad cores rss < <(load "$(url_of "$s")" "$(body_of "$s")" "$(pid_of "$s")" "$OUT/wrk-$s-$round.txt")
    printf "%-6s %-13s %9s %8s %8s %7s %12s %7s\n" "$round" "$s" "$rps" "$p50" "$p99" "$bad" "$cores" "$rss"
    echo "$rps" >>"$OUT/$s.rps"; echo "$p50" >>"$OUT/$s.p50"; echo "$p99" >>"$OUT/$s.p99"; echo "$rss" >>"$OUT/$s.rss"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

for s in "${SERVERS[@]}"; do
  printf "median %-13s %7s req/s, p50 %s ms, p99 %s ms, RSS under load %s MB\n" "$s" \
    "$(median <"$OUT/$s.rps")" "$(median <"$OUT/$s.p50")" "$(median <"$OUT/$s.p99")" "$(median <"$OUT/$s.rss")"
done
gw=$(median <"$OUT/gateway.rps")
awk -v g="$gw" -v b="$(median <"$OUT/gqlbase.rps")" 'BEGIN { printf "ratio gateway/gqlbase: %.3f (target >= 0.6)\n", g / b }'
if [[ -s "$OUT/postgraphile.rps" ]]; then
  awk -v g="$gw" -v p="$(median <"$OUT/postgraphile.rps")" 'BEGIN { printf "ratio gateway/postgraphile: %.2f (target >= 5)\n", g / p }'
fi
