#!/usr/bin/env bash
# Fan-out benchmark: N idle subscribers of one service's queue, each on its own websocket
# connection, then one signed Chup webhook for that service: time until all N have the event,
# and server RSS growth per idle subscriber. The baseline (bench/wsbase: the stock
# async-graphql-axum handler over an in-memory broadcast) and the gateway (fresh database) run
# side by side in each round, ROUNDS times; medians and ratios gateway/baseline are printed.
# Targets (shared/design/PERFORMANCE.md): 10k subscribers all served < 100 ms; ≤ 16 KiB per
# idle subscription.
#
# usage: bench/run-fanout.sh [sqlite|postgres] [N ...]     (default: sqlite 1000 5000 10000)
# env:   ROUNDS=3 EVENTS=5 (measured events per run; the median is taken) + see ws-common.sh
# Every process it starts is stopped by its PID; every database it creates is dropped.
set -euo pipefail

BACKEND="sqlite"
if [[ "${1:-}" == sqlite || "${1:-}" == postgres ]]; then BACKEND="$1"; shift; fi
SIZES=("$@"); [[ ${#SIZES[@]} -gt 0 ]] || SIZES=(1000 5000 10000)
ROUNDS="${ROUNDS:-3}"
EVENTS="${EVENTS:-5}"

# Each subscriber is a socket on both sides (client and server are separate processes).
ulimit -n "$(ulimit -Hn)"
for n in "${SIZES[@]}"; do
  if (( n + 200 > $(ulimit -n) )); then echo "ulimit -n $(ulimit -n) is too low for $n subscribers" >&2; exit 1; fi
done

source "$(dirname "$0")/ws-common.sh"

echo "fan-out benchmark: backend=$BACKEND rounds=$ROUNDS events=$EVENTS sizes=${SIZES[*]}"
echo "gateway binary: $GATEWAY_BIN; load average at start: $(loadavg)"
printf "%-6s %-7s %-8s %9s %9s %9s %11s %6s\n" round N server "all(ms)" "first(ms)" "half(ms)" "KiB/sub" load1
rm -f "$OUT"/fanout-*.{all,kib,first}
for round in $(seq 1 "$ROUNDS"); do
  for n in "${SIZES[@]}"; do
    for server in baseline gateway; do
      log="$OUT/fanout-$server-$n-$round"
      if [[ "$server" == baseline ]]; then
        start_base "$log.server.log"; pid=$BASE_PID; addr=$BASE_ADDR
      else
        start_gateway "$BACKEND" "fanout_${n}_$round" "$log.server.log"; pid=$GATEWAY_PID; addr=$GATEWAY_ADDR
      fi
      "$WSBENCH" fanout --server "$addr" --pid "$pid" --subscribers "$n" --events "$EVENTS" \
        >"$log.txt" 2>&1 || { echo "wsbench failed; see $log.txt" >&2; tail -5 "$log.txt" >&2; exit 1; }
      load=$(cut -d' ' -f1 /proc/loadavg)
      stop "$pid"
      result=$(grep '^RESULT' "$log.txt")
      all=$(field all_ms <<<"$result"); first=$(field first_ms <<<"$result")
      half=$(field half_ms <<<"$result"); kib=$(field per_sub_kib <<<"$result")
      printf "%-6s %-7s %-8s %9s %9s %9s %11s %6s\n" "$round" "$n" "$server" "$all" "$first" "$half" "$kib" "$load"
      echo "$all" >>"$OUT/fanout-$server-$n.all"; echo "$kib" >>"$OUT/fanout-$server-$n.kib"
      echo "$first" >>"$OUT/fanout-$server-$n.first"
    done
  done
done 2>&1

echo
printf "%-7s %-10s %12s %12s %12s %12s\n" N server "all(ms)" "first(ms)" "KiB/sub" ""
for n in "${SIZES[@]}"; do
  for server in baseline gateway; do
    all=$(median <"$OUT/fanout-$server-$n.all"); kib=$(median <"$OUT/fanout-$server-$n.kib")
    first=$(median <"$OUT/fanout-$server-$n.first")
    printf "%-7s %-10s %12s %12s %12s\n" "$n" "$server" "$all" "$first" "$kib"
    rm -f "$OUT/fanout-$server-$n".{all,kib,first}
    eval "m_${server}_all=$all m_${server}_kib=$kib"
  done
  awk -v ga="$m_gateway_all" -v ba="$m_baseline_all" -v gk="$m_gateway_kib" -v bk="$m_baseline_kib" -v n="$n" \
    'BEGIN { printf "%-7s ratio gateway/baseline: all-served %.2f, memory per subscriber %.2f\n", n, ga / ba, gk / bk }'
done
echo "load average at end: $(loadavg)"
