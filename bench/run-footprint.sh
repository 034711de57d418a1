#!/usr/bin/env bash
# Footprint benchmark: time to ready (process start → first 200 from the readiness URL) and
# idle RSS, for the gateway on an existing SQLite file (filled first with DELIVERIES webhooks by
# the gateway itself), beside the bare baselines: bench/echo (axum + HMAC verify) and
# bench/wsbase (axum + an async-graphql schema + the stock websocket handler). ROUNDS rounds;
# medians and ratios gateway/baseline are printed.
# Targets (shared/design/PERFORMANCE.md): idle RSS < 30 MB; ready < 150 ms.
#
# usage: bench/run-footprint.sh
# env:   ROUNDS=3 DELIVERIES=10000 SETTLE_MS=2000 + see ws-common.sh
# Every process it starts is stopped by its PID (wsbench footprint sends SIGTERM to the server
# it started, by PID, and waits for it).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DELIVERIES="${DELIVERIES:-10000}"
SETTLE_MS="${SETTLE_MS:-2000}"
ECHO_ADDR="127.0.0.1:18093"

source "$(dirname "$0")/ws-common.sh"

echo "footprint benchmark: rounds=$ROUNDS, existing SQLite file with $DELIVERIES webhooks, settle ${SETTLE_MS} ms"
echo "gateway binary: $GATEWAY_BIN; load average at start: $(loadavg)"
start_gateway sqlite prepare "$OUT/footprint-prepare.log"
"$WSBENCH" post --server "$GATEWAY_ADDR" --count "$DELIVERIES" | grep -v '^RESULT'
stop "$GATEWAY_PID"
echo "database: $(du -h "$GATEWAY_DIR/bench.db" | cut -f1)"

measure() { # name ready-addr ready-path command...
  local name="$1" addr="$2" path="$3"; shift 3
  local log="$OUT/footprint-$name-$round"
  "$WSBENCH" footprint --server "$addr" --ready-path "$path" --settle-ms "$SETTLE_MS" \
    --log "$log.server.log" -- "$@" >"$log.txt" 2>&1 || { echo "wsbench failed; see $log.txt" >&2; cat "$log.txt" >&2; exit 1; }
  local r; r=$(grep '^RESULT' "$log.txt")
  local ready rss; ready=$(field ready_ms <<<"$r"); rss=$(field rss_kib <<<"$r")
  printf "%-6s %-9s %10s %10s %6s\n" "$round" "$name" "$ready" "$rss" "$(cut -d' ' -f1 /proc/loadavg)"
  echo "$ready" >>"$OUT/footprint-$name.ready"; echo "$rss" >>"$OUT/footprint-$name.rss"
}

printf "%-6s %-9s %10s %10s %6s\n" round server "ready(ms)" "RSS(KiB)" load1
rm -f "$OUT"/footprint-*.{ready,rss}
for round in $(seq 1 "$ROUNDS"); do
  measure echo "$ECHO_ADDR" /hello "$ECHO_BIN" "$ECHO_ADDR" "$SECRET"
  measure wsbase "$BASE_ADDR" /readyz "$WSBASE_BIN" "$BASE_ADDR" "$SECRET"
  measure gateway "$GATEWAY_ADDR" /readyz "$GATEWAY_BIN" --config "$GATEWAY_DIR/bench.toml" --log-format json serve
done

echo
for name in echo wsbase gateway; do
  ready=$(median <"$OUT/footprint-$name.ready"); rss=$(median <"$OUT/footprint-$name.rss")
  printf "median %-8s ready %8s ms, idle RSS %6s KiB (%.1f MiB)\n" "$name" "$ready" "$rss" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')"
  eval "m_${name}_ready=$ready m_${name}_rss=$rss"
  rm -f "$OUT/footprint-$name".{ready,rss}
done
awk -v gr="$m_gateway_ready" -v er="$m_echo_ready" -v wr="$m_wsbase_ready" \
    -v gm="$m_gateway_rss" -v em="$m_echo_rss" -v wm="$m_wsbase_rss" \
  'BEGIN { printf "ratio gateway/echo: ready %.1f, RSS %.1f; gateway/wsbase: ready %.1f, RSS %.1f\n", gr / er, gm / em, gr / wr, gm / wm }'
echo "load average at end: $(loadavg)"
