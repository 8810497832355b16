# shellcheck shell=bash disable=SC2034 # sourced: the variables are used by the scripts that source it
# Loopback ports of every bench script, offset by BENCH_PORT_BASE (default 19000: the ports
# these scripts always used), so two scripts can run at once with bases 1,000 apart, e.g.
#   BENCH_PORT_BASE=21000 bench/callgrind.sh   while   bench/run.sh   runs.
# Sourced by bench/common.sh and bench/entries.sh.
BENCH_PORT_BASE="${BENCH_PORT_BASE:-19000}"
case "$BENCH_PORT_BASE" in
  ''|*[!0-9]*) echo "BENCH_PORT_BASE must be a number (got '$BENCH_PORT_BASE')" >&2; exit 2 ;;
esac
{ [ "$BENCH_PORT_BASE" -ge 2000 ] && [ "$BENCH_PORT_BASE" -le 64000 ]; } \
  || { echo "BENCH_PORT_BASE must be within 2000..64000" >&2; exit 2; }
SIM_PORT=$((BENCH_PORT_BASE + 443))      # the sim enclave
PROXY_PORT=$((BENCH_PORT_BASE + 128))    # ratls-proxy's forward-proxy listener (A)
ADMIN_PORT=$((BENCH_PORT_BASE + 129))    # its admin listener
ROUTE_PORT=$((BENCH_PORT_BASE + 81))     # its sidecar route
NGINX_PORT=$((BENCH_PORT_BASE + 82))     # nginx doing the sidecar job
HAPROXY_PORT=$((BENCH_PORT_BASE + 83))   # haproxy doing the sidecar job
RELAY_PORT=$((BENCH_PORT_BASE + 500))    # examples/tcp_relay
MITM_PORT=$((BENCH_PORT_BASE - 919))     # mitmproxy (18081 by default)
# A second proxy (bench/ab.sh, body.sh B; counts.sh's i-th: + 10 * i).
PORT_STEP=10
