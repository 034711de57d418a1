#!/usr/bin/env bash
# Abuse benchmark (issue 19 item 5): an honest dashboard query's latency alone, then while two
# other API keys attack with the heaviest requests the limits still accept, each key from 16
# connections (twice its default `max_concurrent_requests_per_key` of 8, so its slots stay
# full and the rest of its requests are answered 429).
#
# The honest query is the dashboard board of run-query.sh: `queue(serviceId, date)`, 50 tickets
# with client, staff and service. The attacks, cycled by every attacker connection:
#   events   `events(first: 1000)` with payloads (cost 4,001 of 5,000): 1,000 rows, ~250 KB
#   scans    20 root fields (the bound) of `clients(search:…) { totalCount }`: 20 LIKE scans
#            of the clients table, each a count over every row
#   page     `queueEntries(first: 100)` with clients, staff, services and state history (4,101)
# Before the limits, one request of 1,200 aliases of `events(first: 1000)` was accepted (30 MB,
# RSS 40 → 380 MB, the pool exhausted) and two such clients took this query from 10 ms to 4.6 s.
#
# The database is made by the gateway's migrations and filled by bench/seed: 10,000 tickets
# (one delivery each, 50 per service and day), so events, clients and history are real rows.
#
# usage: bench/run-abuse.sh [sqlite|postgres]
# env:   ROUNDS=3 DURATION=10 THREADS=16 TICKETS=10000
#        PG_URL=postgres://postgres@127.0.0.1:5432  (postgres: the script creates and drops its database)
#        CAREBRIDGE_BIN=path  (measure another build)  SKIP_BUILD=1 (use the existing release binaries)
#        LIMITS="max_concurrent_requests_per_key = 2"  (lines for the gateway's [limits] table)
# Prints per round the honest p50/p99 alone and under attack, and the attackers' answers by
# status; then medians. Every process it starts is stopped by its PID.
set -euo pipefail

BACKEND="${1:-sqlite}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-16}"
TICKETS="${TICKETS:-10000}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
SECRET="bench-chup-secret-0123456789abcdef"
HONEST_KEY="bench-honest-key-0123456789abcdef"
ATTACKER_A="bench-attacker-a-0123456789abcdef"
ATTACKER_B="bench-attacker-b-0123456789abcdef"
GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:18182}"
DAY="2024-01-16"

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$HERE/out/abuse"
rm -rf "$OUT"; mkdir -p "$OUT"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p carebridge -p carebridge-bench-seed)
fi
SEED_BIN="$TARGET/release/carebridge-bench-seed"
GATEWAY_BIN="${CAREBRIDGE_BIN:-$TARGET/release/carebridge}"

PIDS=()
DB="carebridge_abuse_$$"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [[ "$BACKEND" == postgres ]] && psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  true
}
trap cleanup EXIT

case "$BACKEND" in
  sqlite) DATABASE_URL="sqlite://$OUT/abuse.db?mode=rwc" ;;
  postgres) psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB" >/dev/null; DATABASE_URL="$PG_URL/$DB" ;;
  *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;;
esac

cat >"$OUT/bench.toml" <<TOML
listen = "$GATEWAY_ADDR"
database_url = "$DATABASE_URL"
[[sources]]
id = "chup-main"
vendor = "chup"
secret = "$SECRET"
[[api_keys]]
name = "honest"
key = "$HONEST_KEY"
scopes = ["read"]
[[api_keys]]
name = "attacker-a"
key = "$ATTACKER_A"
scopes = ["read"]
[[api_keys]]
name = "attacker-b"
key = "$ATTACKER_B"
scopes = ["read"]
[limits]
${LIMITS:-}
TOML
"$GATEWAY_BIN" --config "$OUT/bench.toml" migrate 2>"$OUT/migrate.log"
"$SEED_BIN" --config "$OUT/bench.toml" --source chup-main --secret "$SECRET" \
  --tickets "$TICKETS" --updates 1 --per-day 50 --last-day "$DAY" 2>"$OUT/seed.log" | tee -a "$OUT/seed.log"

"$GATEWAY_BIN" --config "$OUT/bench.toml" --log-format json serve >"$OUT/gateway.log" 2>&1 &
GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
for _ in $(seq 1 400); do curl -fs -o /dev/null "http://$GATEWAY_ADDR/healthz" && break; sleep 0.05; done
URL="http://$GATEWAY_ADDR/graphql"

ask() { # key body-file → answer on stdout, fails on any status but 200
  curl -fsS -H 'Content-Type: application/json' -H 'Accept: application/graphql-response+json' \
    -H "Authorization: Bearer $1" --data-binary "@$2" "$URL"
}
body() { # query [variables] → a request body
  local variables="${2:-}"
  jq -cn --arg q "$1" --argjson v "${variables:-null}" '{query: $q, variables: $v}'
}

service=$(ask "$HONEST_KEY" <(body '{ services { id vendorId } }') | jq -r '.data.services[] | select(.vendorId == "200") | .id')
body 'query Board($service: ID!, $date: NaiveDate!) { queue(serviceId: $service, date: $date) { id vendorId state { kind rawCode label } queueDate joinedAt client { id name phone } staff { id name } service { id name } } }' \
  "{\"service\": \"$service\", \"date\": \"$DAY\"}" >"$OUT/honest.json"
body '{ events(first: 1000) { cursor kind entityType payload } }' >"$OUT/events.json"
scans=""
for i in $(seq 1 20); do scans+=" s$i: clients(search: \"zz$i\", first: 1) { totalCount }"; done
body "{$scans }" >"$OUT/scans.json"
body '{ queueEntries(first: 100) { totalCount nodes { id vendorId joinedAt state { kind label } client { name phone email } staff { name } service { name } stateHistory { changedAt state { kind } } } } }' >"$OUT/page.json"
ATTACKS=("$OUT/events.json" "$OUT/scans.json" "$OUT/page.json")

n=$(ask "$HONEST_KEY" "$OUT/honest.json" | jq '.data.queue | length')
[[ "$n" == 50 ]] || { echo "the board has $n entries, not 50" >&2; exit 1; }
for attack in "${ATTACKS[@]}"; do  # each attack is accepted: the heaviest the limits allow
  bytes=$(ask "$ATTACKER_A" "$attack" | tee "$OUT/answer-$(basename "$attack")" | wc -c)
  jq -e '.errors == null' "$OUT/answer-$(basename "$attack")" >/dev/null \
    || { echo "$(basename "$attack") was refused:" >&2; head -c 400 "$OUT/answer-$(basename "$attack")" >&2; exit 1; }
  echo "attack $(basename "$attack" .json): accepted, $bytes bytes"
done

rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Warm-up, not measured.
python3 "$HERE/abuse.py" honest "$URL" "$HONEST_KEY" "$OUT/honest.json" 2 >/dev/null

echo "abuse benchmark ($BACKEND): rounds=$ROUNDS, ${DURATION} s per phase, $THREADS connections per attacker key; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "gateway binary: $GATEWAY_BIN; idle RSS $(rss_mb "$GATEWAY_PID") MB"
: >"$OUT/alone.p50"; : >"$OUT/alone.p99"; : >"$OUT/attacked.p50"; : >"$OUT/attacked.p99"; : >"$OUT/rss"
for round in $(seq 1 "$ROUNDS"); do
  alone=$(python3 "$HERE/abuse.py" honest "$URL" "$HONEST_KEY" "$OUT/honest.json" "$DURATION")
  attackers=()
  for key in "$ATTACKER_A" "$ATTACKER_B"; do
    python3 "$HERE/abuse.py" attack "$URL" "$key" "$((DURATION + 2))" "$THREADS" "${ATTACKS[@]}" \
      >"$OUT/attack-$round-${key:7:10}.json" &
    attackers+=($!); PIDS+=($!)
  done
  sleep 1  # the attackers' connections are open and their keys' slots full before measuring
  attacked=$(python3 "$HERE/abuse.py" honest "$URL" "$HONEST_KEY" "$OUT/honest.json" "$DURATION")
  rss=$(rss_mb "$GATEWAY_PID")
  for pid in "${attackers[@]}"; do wait "$pid"; done
  echo "round $round alone:        $alone"
  echo "round $round under attack: $attacked  (gateway RSS $rss MB)"
  for f in "$OUT"/attack-"$round"-*.json; do echo "round $round attacker:     $(cat "$f")"; done
  jq -r .p50_ms <<<"$alone" >>"$OUT/alone.p50"; jq -r .p99_ms <<<"$alone" >>"$OUT/alone.p99"
  jq -r .p50_ms <<<"$attacked" >>"$OUT/attacked.p50"; jq -r .p99_ms <<<"$attacked" >>"$OUT/attacked.p99"
  echo "$rss" >>"$OUT/rss"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median honest alone:        p50 $(median <"$OUT/alone.p50") ms, p99 $(median <"$OUT/alone.p99") ms"
echo "median honest under attack: p50 $(median <"$OUT/attacked.p50") ms, p99 $(median <"$OUT/attacked.p99") ms; gateway RSS $(median <"$OUT/rss") MB"
