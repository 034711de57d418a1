#!/usr/bin/env bash
# End-to-end latency benchmark: signed Chup webhooks at a steady RATE (open loop), each timed
# from its POST to its arrival at a websocket subscriber (one `queueChanged(serviceId)`
# subscriber per service; deliveries rotate over SERVICES services). The baseline
# (bench/wsbase: verify + in-memory broadcast + the stock async-graphql-axum handler) and the
# gateway (fresh database: durable ingest, event log, tailer, subscription) run side by side in
# each round, ROUNDS times; medians and ratios gateway/baseline are printed.
# Targets (shared/design/PERFORMANCE.md): p50 < 2 ms, p99 < 10 ms at 1k webhooks/s.
#
# usage: bench/run-latency.sh [sqlite|postgres]
# env:   ROUNDS=3 RATE=1000 SECONDS_=10 SERVICES=20 CONNECTIONS=32 + see ws-common.sh
#        PG_SOCKET=/var/run/postgresql  (the gateway reaches PostgreSQL over its Unix socket)
# Every process it starts is stopped by its PID; every database it creates is dropped.
set -euo pipefail

BACKEND="${1:-sqlite}"
ROUNDS="${ROUNDS:-3}"
RATE="${RATE:-1000}"
DURATION="${SECONDS_:-10}"
SERVICES="${SERVICES:-20}"
CONNECTIONS="${CONNECTIONS:-32}"
case "$BACKEND" in sqlite|postgres) ;; *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;; esac

source "$(dirname "$0")/ws-common.sh"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "latency benchmark: backend=$BACKEND rounds=$ROUNDS rate=$RATE/s for ${DURATION}s, $SERVICES services/subscribers, $CONNECTIONS connections"
echo "gateway binary: $GATEWAY_BIN; load average at start: $(loadavg)"
printf "%-6s %-8s %7s %8s %8s %8s %9s %9s %7s %6s %6s\n" round server "rate" "p50(ms)" "p90(ms)" "p99(ms)" "post-p50" "post-p99" missing cores load1
rm -f "$OUT"/latency-*.{p50,p99}
for round in $(seq 1 "$ROUNDS"); do
  for server in baseline gateway; do
    log="$OUT/latency-$BACKEND-$server-$round"
    if [[ "$server" == baseline ]]; then
      start_base "$log.server.log"; pid=$BASE_PID; addr=$BASE_ADDR
    else
      start_gateway "$BACKEND" "latency_$round" "$log.server.log"; pid=$GATEWAY_PID; addr=$GATEWAY_ADDR
    fi
    before=$(cpu_ticks "$pid"); started=$(date +%s.%N)
    "$WSBENCH" latency --server "$addr" --rate "$RATE" --seconds "$DURATION" --services "$SERVICES" \
      --connections "$CONNECTIONS" >"$log.txt" 2>&1 || { echo "wsbench failed; see $log.txt" >&2; tail -5 "$log.txt" >&2; exit 1; }
    after=$(cpu_ticks "$pid"); ended=$(date +%s.%N)
    load=$(cut -d' ' -f1 /proc/loadavg)
    stop "$pid"
    cores=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", t / hz / (b - a) }')
    r=$(grep '^RESULT' "$log.txt")
    printf "%-6s %-8s %7s %8s %8s %8s %9s %9s %7s %6s %6s\n" "$round" "$server" "$(field rate <<<"$r")" \
      "$(field p50 <<<"$r")" "$(field p90 <<<"$r")" "$(field p99 <<<"$r")" "$(field http_p50 <<<"$r")" \
      "$(field http_p99 <<<"$r")" "$(field missing <<<"$r")" "$cores" "$load"
    field p50 <<<"$r" >>"$OUT/latency-$server.p50"; field p99 <<<"$r" >>"$OUT/latency-$server.p99"
  done
done

echo
for server in baseline gateway; do
  p50=$(median <"$OUT/latency-$server.p50"); p99=$(median <"$OUT/latency-$server.p99")
  echo "median $server: p50 $p50 ms, p99 $p99 ms"
  eval "m_${server}_p50=$p50 m_${server}_p99=$p99"
  rm -f "$OUT/latency-$server".{p50,p99}
done
awk -v g50="$m_gateway_p50" -v b50="$m_baseline_p50" -v g99="$m_gateway_p99" -v b99="$m_baseline_p99" \
  'BEGIN { printf "ratio gateway/baseline: p50 %.2f, p99 %.2f\n", g50 / b50, g99 / b99 }'
echo "load average at end: $(loadavg)"
