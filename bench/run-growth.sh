#!/usr/bin/env bash
# Growth benchmark: does the gateway slow down as history piles up? The same measurements on a
# database holding 10,000 stored webhooks (the baseline) and one holding 1,000,000, side by side
# in each round; target: flat within ±10 % (shared/design/PERFORMANCE.md).
#
# Per size, the database is made once: the gateway's migrations, then bench/seed (the gateway's
# own verify → map → group-commit writer, without HTTP) writes the history of a clinic group:
# Chup tickets with 4 deliveries each (WAITING → ARRIVED → SERVING → SERVED), 50 tickets per
# service and day, 20 services, 20 staff, 2,000 clients; the last day is 2024-01-16. Every round
# starts from a fresh copy of it (SQLite: the file; PostgreSQL: CREATE DATABASE … TEMPLATE), then:
#   query    `queue(serviceId, date)` — service "200" on 2024-01-16, 50 entries with client,
#            staff and service — wrk -c64 (throughput) and wrk -t1 -c1 (latency, one at a time)
#   ingest   signed Chup webhooks for 2024-01-17 (bench/gen_bodies.py, bench/post.lua, as in
#            bench/run-ingest.sh): new tickets of the same clients, services and staff
# and prints medians and the ratios large/small.
#
# usage: bench/run-growth.sh [sqlite|postgres]
# env:   ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=2 SMALL=10000 LARGE=1000000 BODIES_COUNT=400000
#        PG_URL=postgres://postgres@127.0.0.1:5432
#        PG_SOCKET=/var/run/postgresql  the seeder and the gateway reach PostgreSQL over its Unix
#                      socket (as in run-ingest.sh; over TCP sqlx 0.9.0's missing TCP_NODELAY
#                      holds the 1M seed to ≈590 deliveries/s)
#        KEEP_SEED=1   keep the seeded databases (bench/out/growth/*.db, PostgreSQL templates)
#                      for the next run, which then reuses them instead of seeding again
#        CAREBRIDGE_BIN=path, SKIP_BUILD=1  (as in run-ingest.sh)
# Every process it starts is stopped by its PID; every database it creates is dropped (unless
# KEEP_SEED=1 for the seeded templates).
set -euo pipefail

BACKEND="${1:-sqlite}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
SMALL="${SMALL:-10000}"
LARGE="${LARGE:-1000000}"
BODIES_COUNT="${BODIES_COUNT:-400000}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
SECRET="bench-chup-secret-0123456789abcdef"
API_KEY="bench-api-key-0123456789abcdef"
GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:18192}"
DAY="2024-01-16"
UPDATES=4

case "$BACKEND" in sqlite|postgres) ;; *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;; esac
command -v wrk >/dev/null || { echo "wrk missing: apt-get update && apt-get install -y wrk" >&2; exit 1; }

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$HERE/out/growth"
mkdir -p "$OUT"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p carebridge -p carebridge-bench-seed)
fi
SEED_BIN="$TARGET/release/carebridge-bench-seed"
GATEWAY_BIN="${CAREBRIDGE_BIN:-$TARGET/release/carebridge}"

BODIES="$HERE/out/bodies-$BODIES_COUNT.txt"
if [[ ! -s "$BODIES" ]]; then
  echo "generating $BODIES_COUNT signed bodies into $BODIES"
  python3 "$HERE/gen_bodies.py" "$BODIES_COUNT" "$SECRET" "$BODIES"
fi

PIDS=()
DATABASES=()
TEMPLATES=()
DIRS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  local drop=("${DATABASES[@]}")
  [[ -z "${KEEP_SEED:-}" ]] && drop+=("${TEMPLATES[@]}")
  for db in "${drop[@]}"; do
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  for dir in "${DIRS[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT

wait_ready() { # url
  for _ in $(seq 1 400); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "server at $1 did not become ready" >&2; return 1
}

stop() { # pid
  kill "$1"; wait "$1" 2>/dev/null || true
  local keep=(); for p in "${PIDS[@]}"; do [[ "$p" != "$1" ]] && keep+=("$p"); done; PIDS=("${keep[@]}")
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk against $1 with script $2 while process $3 serves, $4 = "-tT -cC" ; prints
# "rps p50_ms p99_ms non2xx server_cores".
load() {
  local url="$1" script="$2" pid="$3" shape="$4" log="$5" before after threads
  threads="${shape%% *}"; threads="${threads#-t}"
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  BODIES="$BODIES" WRK_THREADS="$threads" QUERY_BODY="$OUT/query-$BACKEND.json" API_KEY="$API_KEY" \
    wrk $shape -d"$DURATION" --latency -s "$script" "$url" >"$log" 2>&1
  after=$(cpu_ticks "$pid")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" -v dur="${DURATION%s}" '
    function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v }
                     if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.3f %.3f %d %.2f\n", rps, p50, p99, bad + 0, ticks / hz / dur }' "$log"
}

# The URL the gateway and the seeder use for database $1 (psql keeps using $PG_URL over TCP).
pg_url() { echo "$PG_URL/$1${PG_SOCKET:+?host=$PG_SOCKET}"; }

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

write_config() { # dir database_url
  cat >"$1/bench.toml" <<TOML
listen = "$GATEWAY_ADDR"
database_url = "$2"
[[sources]]
id = "chup-main"
vendor = "chup"
secret = "$SECRET"
[limits]
webhook_rate_per_second = 1000000
webhook_burst = 1000000
[[api_keys]]
name = "bench"
key = "$API_KEY"
scopes = ["read"]
TOML
}

# The seeded database of $1 stored webhooks: a SQLite file or a PostgreSQL template database,
# made once (and kept with KEEP_SEED=1). Sets SEEDED to the file path or the template name.
seed() { # size
  local size="$1" tickets=$(( $1 / UPDATES )) dir
  dir="$(mktemp -d)"; DIRS+=("$dir")
  if [[ "$BACKEND" == sqlite ]]; then
    SEEDED="$OUT/seed-sqlite-$size.db"
    if [[ ! -s "$SEEDED" ]]; then
      write_config "$dir" "sqlite://$dir/seed.db?mode=rwc"
      "$GATEWAY_BIN" --config "$dir/bench.toml" migrate 2>>"$OUT/seed-$size.log"
      "$SEED_BIN" --config "$dir/bench.toml" --source chup-main --secret "$SECRET" --tickets "$tickets" \
        --updates "$UPDATES" --last-day "$DAY" 2>>"$OUT/seed-$size.log" >&2
      sqlite3 "$dir/seed.db" "PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;" >/dev/null
      mv "$dir/seed.db" "$SEEDED"
    fi
    [[ -n "${KEEP_SEED:-}" ]] || DIRS+=("$SEEDED")
    write_config "$dir" "sqlite://$SEEDED?mode=rwc"
  else
    # Not `carebridge_…`: .ci/run drops every database with that prefix (left by interrupted test
    # runs), and a kept 1M seed takes ten minutes to make again.
    SEEDED="cbbench_growth_seed_$size"
    TEMPLATES+=("$SEEDED")
    if ! psql "$PG_URL/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$SEEDED'" | grep -q 1; then
      psql "$PG_URL/postgres" -qc "CREATE DATABASE $SEEDED" >/dev/null
      write_config "$dir" "$(pg_url "$SEEDED")"
      "$GATEWAY_BIN" --config "$dir/bench.toml" migrate 2>>"$OUT/seed-$size.log"
      "$SEED_BIN" --config "$dir/bench.toml" --source chup-main --secret "$SECRET" --tickets "$tickets" \
        --updates "$UPDATES" --last-day "$DAY" 2>>"$OUT/seed-$size.log" >&2
    fi
    write_config "$dir" "$(pg_url "$SEEDED")"
  fi
  # A kept seed from an older build gets this build's pending migrations, applied by the gateway.
  "$GATEWAY_BIN" --config "$dir/bench.toml" migrate 2>>"$OUT/seed-$size.log"
  if [[ "$BACKEND" == sqlite ]]; then
    sqlite3 "$SEEDED" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
  else
    psql "$PG_URL/$SEEDED" -qc "VACUUM ANALYZE" >/dev/null
  fi
}

echo "growth benchmark: backend=$BACKEND sizes $SMALL vs $LARGE stored webhooks, rounds=$ROUNDS"
declare -A SEED
for size in "$SMALL" "$LARGE"; do
  started=$(date +%s)
  seed "$size"
  SEED[$size]="$SEEDED"
  echo "seeded $size: $SEEDED ($(( $(date +%s) - started )) s)"
done

# One round on one size: a fresh copy of the seeded database, the gateway on it, then the
# query and the ingest load. Appends to $OUT/<size>.<metric>.
measure() { # round size
  local round="$1" size="$2" dir url pid
  dir="$(mktemp -d)"; DIRS+=("$dir")
  if [[ "$BACKEND" == sqlite ]]; then
    cp "${SEED[$size]}" "$dir/bench.db"
    url="sqlite://$dir/bench.db?mode=rwc"
  else
    local db="carebridge_growth_$$_${round}_$size"
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $db TEMPLATE ${SEED[$size]}" >/dev/null
    DATABASES+=("$db")
    url="$(pg_url "$db")"
  fi
  write_config "$dir" "$url"
  "$GATEWAY_BIN" --config "$dir/bench.toml" --log-format json serve >"$OUT/gateway-$size-$round.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_ready "http://$GATEWAY_ADDR/healthz"
  if [[ ! -s "$OUT/query-$BACKEND.json" ]]; then
    local service
    if [[ "$BACKEND" == sqlite ]]; then service=$(sqlite3 "$dir/bench.db" "SELECT id FROM services WHERE vendor_id = '200'")
    else service=$(psql "$url" -tAc "SELECT id FROM services WHERE vendor_id = '200'"); fi
    local query='query Board($service: ID!, $date: NaiveDate!) { queue(serviceId: $service, date: $date) { id vendorId state { kind rawCode label } queueDate joinedAt client { id name phone } staff { id name } service { id name } } }'
    jq -cn --arg q "$query" --arg s "Service:$service" --arg d "$DAY" \
      '{query: $q, variables: {service: $s, date: $d}, operationName: "Board"}' >"$OUT/query-$BACKEND.json"
  fi
  local n
  n=$(curl -fs -H 'Content-Type: application/json' -H "Authorization: Bearer $API_KEY" \
        --data-binary "@$OUT/query-$BACKEND.json" "http://$GATEWAY_ADDR/graphql" | jq '.data.queue | length')
  [[ "$n" == 50 ]] || { echo "the board has $n entries, not 50" >&2; exit 1; }
  # Warm-up of the query path (statement caches, page cache), not measured.
  QUERY_BODY="$OUT/query-$BACKEND.json" API_KEY="$API_KEY" wrk -t1 -c1 -d2s -s "$HERE/query.lua" "http://$GATEWAY_ADDR" >/dev/null 2>&1

  local q64 q1 ing
  q64=$(load "http://$GATEWAY_ADDR" "$HERE/query.lua" "$pid" "-t$THREADS -c$CONNECTIONS" "$OUT/wrk-query64-$size-$round.txt")
  q1=$(load "http://$GATEWAY_ADDR" "$HERE/query.lua" "$pid" "-t1 -c1" "$OUT/wrk-query1-$size-$round.txt")
  ing=$(load "http://$GATEWAY_ADDR" "$HERE/post.lua" "$pid" "-t$THREADS -c$CONNECTIONS" "$OUT/wrk-ingest-$size-$round.txt")
  stop "$pid"
  read -r qr qp50 qp99 qbad qcores <<<"$q64"
  read -r lr lp50 lp99 lbad _ <<<"$q1"
  read -r ir ip50 ip99 ibad icores <<<"$ing"
  printf "%-6s %-8s | %8s %8s %7s %5s | %8s %8s | %8s %8s %5s %6s\n" "$round" "$size" \
    "$qr" "$qp99" "$qcores" "$qbad" "$lp50" "$lp99" "$ir" "$ip99" "$ibad" "$icores"
  echo "$qr" >>"$OUT/$size.qrps"; echo "$lp50" >>"$OUT/$size.lp50"; echo "$lp99" >>"$OUT/$size.lp99"
  echo "$ir" >>"$OUT/$size.irps"; echo "$ip99" >>"$OUT/$size.ip99"
  if [[ "$BACKEND" == postgres ]]; then
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS carebridge_growth_$$_${round}_$size WITH (FORCE)" >/dev/null
  fi
  rm -rf "$dir"
}

for size in "$SMALL" "$LARGE"; do for m in qrps lp50 lp99 irps ip99; do : >"$OUT/$size.$m"; done; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "                | query wrk -c$CONNECTIONS                  | query -c1 (ms)    | ingest wrk -c$CONNECTIONS"
printf "%-6s %-8s | %8s %8s %7s %5s | %8s %8s | %8s %8s %5s %6s\n" round size "req/s" "p99(ms)" cores non2xx \
  p50 p99 "req/s" "p99(ms)" non2xx cores
for round in $(seq 1 "$ROUNDS"); do
  for size in "$SMALL" "$LARGE"; do measure "$round" "$size"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

for size in "$SMALL" "$LARGE"; do
  printf "median %-8s query %7s req/s, latency p50 %s ms p99 %s ms; ingest %7s req/s p99 %s ms\n" "$size" \
    "$(median <"$OUT/$size.qrps")" "$(median <"$OUT/$size.lp50")" "$(median <"$OUT/$size.lp99")" \
    "$(median <"$OUT/$size.irps")" "$(median <"$OUT/$size.ip99")"
done
ratio() { awk -v a="$(median <"$OUT/$LARGE.$1")" -v b="$(median <"$OUT/$SMALL.$1")" 'BEGIN { printf "%.3f", a / b }'; }
echo "ratio $LARGE/$SMALL (target 0.90-1.10): query req/s $(ratio qrps), query latency p50 $(ratio lp50), ingest req/s $(ratio irps)"
