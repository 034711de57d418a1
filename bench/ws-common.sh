# Shared by bench/run-latency.sh, bench/run-fanout.sh and bench/run-footprint.sh (sourced, not
# run): paths, the release build, starting and stopping servers by PID, medians, the gateway's
# benchmark config. Same conventions as bench/run-ingest.sh.
# env: SKIP_BUILD=1 (use the existing release binaries), CAREBRIDGE_BIN=path (another gateway
#      build), PG_URL=postgres://postgres@127.0.0.1:5432 (server; a fresh database per round)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$HERE/out"
mkdir -p "$OUT"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
SECRET="bench-chup-secret-0123456789abcdef"
API_KEY="bench-api-key-0123456789abcdef"
BASE_ADDR="127.0.0.1:18091"
GATEWAY_ADDR="127.0.0.1:18092"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p carebridge -p carebridge-bench-wsbench \
    -p carebridge-bench-wsbase -p carebridge-bench-echo)
fi
WSBENCH="$TARGET/release/wsbench"
WSBASE_BIN="$TARGET/release/carebridge-bench-wsbase"
ECHO_BIN="$TARGET/release/carebridge-bench-echo"
GATEWAY_BIN="${CAREBRIDGE_BIN:-$TARGET/release/carebridge}"

PIDS=()
DATABASES=()
DIRS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for db in "${DATABASES[@]}"; do
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

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The value of key $1 in a "RESULT k=v k=v" line on stdin.
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# A database URL for a fresh database: SQLite file in $1, or a new PostgreSQL database.
fresh_database() { # backend dir tag
  if [[ "$1" == sqlite ]]; then
    echo "sqlite://$2/bench.db?mode=rwc"
  else
    local db="carebridge_bench_ws_$$_$3"
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $db" >/dev/null
    DATABASES+=("$db")
    # PG_SOCKET=/var/run/postgresql: over the Unix socket, as in run-ingest.sh (sqlx 0.9.0 sets
    # no TCP_NODELAY, so over TCP small statements wait on delayed ACKs).
    echo "$PG_URL/$db${PG_SOCKET:+?host=$PG_SOCKET}"
  fi
}

# Writes the gateway's benchmark config to $1/bench.toml: one Chup source, one read key, the
# per-source webhook rate limit out of the way (the benchmarks post faster than 200/s), and
# room for the fan-out's connections.
gateway_config() { # dir database_url
  cat >"$1/bench.toml" <<TOML
listen = "$GATEWAY_ADDR"
database_url = "$2"
[[sources]]
id = "chup-main"
vendor = "chup"
secret = "$SECRET"
[[api_keys]]
name = "bench"
key = "$API_KEY"
scopes = ["read"]
[limits]
webhook_rate_per_second = 1000000
webhook_burst = 1000000
max_websocket_connections = 100000
TOML
}

# Starts the gateway on a fresh database; sets GATEWAY_PID and GATEWAY_DIR.
start_gateway() { # backend tag log
  GATEWAY_DIR="$(mktemp -d)"; DIRS+=("$GATEWAY_DIR")
  gateway_config "$GATEWAY_DIR" "$(fresh_database "$1" "$GATEWAY_DIR" "$2")"
  "$GATEWAY_BIN" --config "$GATEWAY_DIR/bench.toml" --log-format json serve >"$3" 2>&1 &
  GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
  wait_ready "http://$GATEWAY_ADDR/readyz"
}

start_base() { # log
  "$WSBASE_BIN" "$BASE_ADDR" "$SECRET" >"$1" 2>&1 &
  BASE_PID=$!; PIDS+=("$BASE_PID")
  wait_ready "http://$BASE_ADDR/readyz"
}
