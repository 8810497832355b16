# Shared by bench/run.sh and bench/load.sh: build, start a sim enclave and ratls-proxy on
# loopback, summarise oha JSON. Everything stays on 127.0.0.1 and stops by itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/bench/ports.sh"
W="$(mktemp -d /tmp/ratls-bench.XXXXXX)"
BIN="${PROXY_BIN:-$ROOT/target/release/ratls-proxy}"  # PROXY_BIN: another build (bench/load.sh)
SIM="$ROOT/target/release/examples/sim_enclave"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# NEED_OHA=0: a script that drives curl instead (bench/body.sh).
[ "${NEED_OHA:-1}" = 0 ] || command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
# NO_BUILD=1: use the builds already there (e.g. while another feature set is being built).
[ "${NO_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release --quiet --bin ratls-proxy --example sim_enclave --example conn_cost --example tcp_relay)
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

wait_port() { for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not up" >&2; return 1; }

start_sim() {
  "$SIM" --listen "127.0.0.1:$SIM_PORT" --pki-dir "$W/pki" --quiet > "$W/sim.log" 2>&1 &
  PIDS+=($!); SIM_PID=$!
  wait_port "$SIM_PORT"
}

# start_proxy [LISTEN_PORT ADMIN_PORT ROUTE_PORT [COMMAND...]]: a ratls-proxy for the sim
# enclave (defaults $PROXY_PORT, $ADMIN_PORT, $ROUTE_PORT and this build); sets PROXY_PID and CA.
start_proxy() {
  local port="${1:-$PROXY_PORT}" admin="${2:-$ADMIN_PORT}" route="${3:-$ROUTE_PORT}"
  shift 3 2>/dev/null || shift $#
  local cmd=("$@"); [ ${#cmd[@]} -eq 0 ] && cmd=("$BIN")
  cat > "$W/proxy-$port.toml" <<TOML
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
[limits]
max_connections = 8192
idle_timeout_secs = ${IDLE_TIMEOUT:-300}
[ca]
dir = "$W/ca"
[trust]
root_ca = "$W/pki/root.pem"
[collateral]
source = "$W/pki/collateral.json"
[[enclave]]
hosts = ["bench.enclave.test"]
mrenclave = ["e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"]
connect_to = "127.0.0.1:$SIM_PORT"
[[route]]
listen = "127.0.0.1:$route"
upstream = "https://bench.enclave.test"
TOML
  RUST_LOG="${RUST_LOG:-warn}" "${cmd[@]}" run --config "$W/proxy-$port.toml" > "$W/proxy-$port.log" 2>&1 &
  PIDS+=($!); PROXY_PID=$!
  wait_port "$port"
  CA="$W/ca/ca.pem"
}

# nginx and haproxy doing exactly the sidecar job (plain HTTP in, TLS to the enclave out, no
# verification, keep-alive upstream): what a user would run instead of ratls-proxy.
# start_peers: sets NGINX_MIDS (master + worker pids, 127.0.0.1:$NGINX_PORT) and HAPROXY_PID
# (127.0.0.1:$HAPROXY_PORT), each empty when that server is not available.
render() { sed -e "s|@W@|$W|g" -e "s|@LISTEN@|$2|g" -e "s|@UPSTREAM@|127.0.0.1:$SIM_PORT|g" -e "s|@USER@|$3|g" "$1"; }
start_peers() {
  local missing=() nuser workers=""
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
  HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
  [ -x "$NGINX" ] || missing+=(nginx)
  [ -x "$HAPROXY" ] || missing+=(haproxy)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing ${missing[*]} (apt-get)" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" > "$W/apt.log" 2>&1 \
        || echo "apt-get install ${missing[*]} failed, see $W/apt.log" >&2
    else
      echo "skipping ${missing[*]}: not installed and not root (apt-get install -y nginx haproxy)" >&2
    fi
  fi
  NGINX_MIDS=""
  if [ -x "$NGINX" ]; then
    mkdir -p "$W/nginx"
    # As root the workers would drop to nobody, who cannot enter the 0700 work dir.
    nuser=""; [ "$(id -u)" = 0 ] && nuser="user root;"
    render "$ROOT/bench/nginx.conf" "127.0.0.1:$NGINX_PORT" "$nuser" > "$W/nginx/nginx.conf"
    "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" > "$W/nginx.log" 2>&1 &
    PIDS+=($!); NGINX_PID=$!
    wait_port "$NGINX_PORT"
    # The master binds before it forks its workers: wait for both, charge master + workers.
    for _ in $(seq 1 50); do
      workers=$(ps -o pid= --ppid "$NGINX_PID" | tr '\n' ' ')
      [ "$(echo "$workers" | wc -w)" -ge 2 ] && break; sleep 0.1
    done
    NGINX_MIDS="$NGINX_PID $workers"
  fi
  HAPROXY_PID=""
  if [ -x "$HAPROXY" ]; then
    render "$ROOT/bench/haproxy.cfg" "127.0.0.1:$HAPROXY_PORT" "" > "$W/haproxy.cfg"
    "$HAPROXY" -db -f "$W/haproxy.cfg" > "$W/haproxy.log" 2>&1 &
    PIDS+=($!); HAPROXY_PID=$!
    wait_port "$HAPROXY_PORT"
  fi
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# summarise NAME FILE.json → one TSV line: name req/s p50_ms p99_ms statuses errors
summarise() {
  python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
s = d["summary"]; p = d.get("latencyPercentiles", {})
ms = lambda v: "-" if v is None else f"{v*1000:.3f}"
codes = d.get("statusCodeDistribution", {})
errs = d.get("errorDistribution", {})
print(f"{name}\t{s['requestsPerSec']:.0f}\t{ms(p.get('p50'))}\t{ms(p.get('p99'))}\t{json.dumps(codes)}\t{json.dumps(errs)}")
PY
}
