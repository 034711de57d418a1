#!/usr/bin/env bash
# Ingest benchmark: signed Chup live_queue_updated webhooks against the bare baseline ("echo":
# parse + HMAC verify, no storage) and against the gateway (full durable pipeline), ROUNDS times,
# side by side in each round, then medians and the ratio gateway/echo (see
# shared/design/PERFORMANCE.md: absolute numbers drift on this box, ratios within one run don't).
#
# usage: bench/run-ingest.sh [sqlite|postgres]
# env:   ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=2 BODIES_COUNT=400000
#        PG_URL=postgres://postgres@127.0.0.1:5432  (server; a fresh database per round)
#        CAREBRIDGE_BIN=path  (measure another build, e.g. a baseline; default: build release)
#        SKIP_BUILD=1         (use the existing release binaries)
# Every process it starts is stopped by its PID; every database it creates is dropped.
set -euo pipefail

BACKEND="${1:-sqlite}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
BODIES_COUNT="${BODIES_COUNT:-400000}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
SECRET="bench-chup-secret-0123456789abcdef"
ECHO_ADDR="127.0.0.1:18081"
GATEWAY_ADDR="127.0.0.1:18082"

case "$BACKEND" in sqlite|postgres) ;; *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;; esac
command -v wrk >/dev/null || { echo "wrk missing: apt-get update && apt-get install -y wrk" >&2; exit 1; }

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$HERE/out"
mkdir -p "$OUT"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p carebridge -p carebridge-bench-echo)
fi
ECHO_BIN="$TARGET/release/carebridge-bench-echo"
GATEWAY_BIN="${CAREBRIDGE_BIN:-$TARGET/release/carebridge}"

BODIES="$OUT/bodies-$BODIES_COUNT.txt"
if [[ ! -s "$BODIES" ]]; then
  echo "generating $BODIES_COUNT signed bodies into $BODIES"
  python3 "$HERE/gen_bodies.py" "$BODIES_COUNT" "$SECRET" "$BODIES"
fi

PIDS=()
DATABASES=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for db in "${DATABASES[@]}"; do
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

wait_ready() { # url
  for _ in $(seq 1 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "server at $1 did not become ready" >&2; return 1
}

stop() { # pid
  kill "$1"; wait "$1" 2>/dev/null || true
  local keep=(); for p in "${PIDS[@]}"; do [[ "$p" != "$1" ]] && keep+=("$p"); done; PIDS=("${keep[@]}")
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Runs wrk against $1 (base URL) while process $2 serves; prints "rps p99_ms non2xx server_cores".
load() {
  local url="$1" pid="$2" log="$3" before after
  before=$(cpu_ticks "$pid")
  BODIES="$BODIES" WRK_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$HERE/post.lua" "$url" >"$log" 2>&1
  after=$(cpu_ticks "$pid")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" -v dur="${DURATION%s}" '
    /Requests\/sec:/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) }
               else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } ; p99 = v }
    /Non-2xx/ { bad = $NF }
    /WARNING/ { warn = 1 }
    END { printf "%.0f %.2f %d %.2f%s\n", rps, p99, bad + 0, ticks / hz / dur, (warn ? " reused-bodies" : "") }' "$log"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "ingest benchmark: backend=$BACKEND rounds=$ROUNDS wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
echo "gateway binary: $GATEWAY_BIN"
printf "%-6s %-8s %10s %9s %7s %12s\n" round server "req/s" "p99(ms)" non2xx "server-cores"
: >"$OUT/echo.rps"; : >"$OUT/gw.rps"; : >"$OUT/echo.p99"; : >"$OUT/gw.p99"
for round in $(seq 1 "$ROUNDS"); do
  "$ECHO_BIN" "$ECHO_ADDR" "$SECRET" >"$OUT/echo-$round.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_ready "http://$ECHO_ADDR/hello"
  read -r rps p99 bad cores warn < <(load "http://$ECHO_ADDR" "$pid" "$OUT/wrk-echo-$round.txt")
  stop "$pid"
  printf "%-6s %-8s %10s %9s %7s %12s %s\n" "$round" echo "$rps" "$p99" "$bad" "$cores" "${warn:-}"
  echo "$rps" >>"$OUT/echo.rps"; echo "$p99" >>"$OUT/echo.p99"

  dir="$(mktemp -d)"
  if [[ "$BACKEND" == sqlite ]]; then
    database_url="sqlite://$dir/bench.db?mode=rwc"
  else
    db="carebridge_bench_$$_$round"
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $db" >/dev/null
    DATABASES+=("$db")
    database_url="$PG_URL/$db"
  fi
  cat >"$dir/bench.toml" <<TOML
listen = "$GATEWAY_ADDR"
database_url = "$database_url"
[[sources]]
id = "chup-main"
vendor = "chup"
secret = "$SECRET"
[limits]
webhook_rate_per_second = 1000000  # the benchmark measures the pipeline, not the rate limit
webhook_burst = 1000000
[[api_keys]]
name = "bench"
key = "bench-api-key-0123456789abcdef"
scopes = ["read"]
TOML
  "$GATEWAY_BIN" --config "$dir/bench.toml" --log-format json serve >"$OUT/gateway-$round.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_ready "http://$GATEWAY_ADDR/healthz"
  read -r rps p99 bad cores warn < <(load "http://$GATEWAY_ADDR" "$pid" "$OUT/wrk-gateway-$round.txt")
  stop "$pid"
  printf "%-6s %-8s %10s %9s %7s %12s %s\n" "$round" gateway "$rps" "$p99" "$bad" "$cores" "${warn:-}"
  echo "$rps" >>"$OUT/gw.rps"; echo "$p99" >>"$OUT/gw.p99"
  rm -rf "$dir"
done

echo_rps=$(median <"$OUT/echo.rps"); gw_rps=$(median <"$OUT/gw.rps")
echo_p99=$(median <"$OUT/echo.p99"); gw_p99=$(median <"$OUT/gw.p99")
echo "median echo:    $echo_rps req/s, p99 $echo_p99 ms"
echo "median gateway: $gw_rps req/s, p99 $gw_p99 ms"
awk -v g="$gw_rps" -v e="$echo_rps" 'BEGIN { printf "ratio gateway/echo: %.3f\n", g / e }'
