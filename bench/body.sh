#!/usr/bin/env bash
# A/B of the per-chunk cost of relaying a large body: two proxy builds side by side in ONE
# run, rounds interleaved (A then B, then B then A), each round downloading SIZE bytes N times
# over one keep-alive connection (curl, one process per round and side) through intercept,
# origination and the sidecar route, from the sim enclave's /bytes. Each line charges the
# proxy's CPU (user + system, all threads) to the bytes it relayed.
#   bench/body.sh BIN_A BIN_B                 e.g. a copy of main's build vs target/release/ratls-proxy
#   ROUNDS=4 N=8 SIZE=268435456 MODES="intercept origination sidecar" bench/body.sh A B   (the defaults)
#   REQ_PATH=/ N=3000 bench/body.sh A B      small requests instead (the sim's JSON echo): the
#                                            per-request cost, in proxy_cpu_us_per_req
# Loopback only; every run is bounded (N downloads per line). Needs curl, not oha.
NEED_OHA=0 source "$(dirname "$0")/common.sh"
[ $# -eq 2 ] || { echo "usage: bench/body.sh BIN_A BIN_B" >&2; exit 2; }
ROUNDS="${ROUNDS:-4}"; N="${N:-8}"; SIZE="${SIZE:-268435456}"
MODES="${MODES:-intercept origination sidecar}"; P="${REQ_PATH:-/bytes?n=$SIZE}"
start_sim
# shellcheck disable=SC2086 # a "binary" may be a command with arguments
start_proxy $PROXY_PORT $ADMIN_PORT $ROUTE_PORT $1; PA=$PROXY_PID
# shellcheck disable=SC2086
start_proxy $((PROXY_PORT + PORT_STEP)) $((ADMIN_PORT + PORT_STEP)) $((ROUTE_PORT + PORT_STEP)) $2; PB=$PROXY_PID
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
echo -e "round\tmode\tside\tMiB/s\tproxy_cpu_ms_per_GiB\tproxy_cpu_us_per_req"
for r in $(seq 1 "$ROUNDS"); do
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  for mode in $MODES; do
    for side in $order; do
      if [ $side = A ]; then port=$PROXY_PORT; route=$ROUTE_PORT; pid=$PA; else port=$((PROXY_PORT + PORT_STEP)); route=$((ROUTE_PORT + PORT_STEP)); pid=$PB; fi
      case $mode in
        intercept) url="https://bench.enclave.test$P"; args=(-x "http://127.0.0.1:$port" --cacert "$CA") ;;
        origination) url="http://bench.enclave.test$P"; args=(-x "http://127.0.0.1:$port") ;;
        sidecar) url="http://127.0.0.1:$route$P"; args=() ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
      esac
      urls=(); for _ in $(seq 1 "$N"); do urls+=("$url" -o /dev/null); done
      p0=$(ticks "$pid"); t0=$(date +%s.%N)
      curl -sS --fail -w '%{size_download}\n' "${args[@]}" "${urls[@]}" > "$W/sizes"
      t1=$(date +%s.%N); p1=$(ticks "$pid")
      bytes=$(awk '{s += $1} END {print s}' "$W/sizes")
      python3 - "$r" "$mode" "$side" "$t0" "$t1" "$((p1 - p0))" "$TCK" "$N" "$bytes" <<'PY'
import sys
r, mode, side, t0, t1, ticks, tck, n, total = sys.argv[1:]
total = max(1, int(total))
secs = float(t1) - float(t0)
cpu_ms = int(ticks) * 1000.0 / float(tck)
print(f"{r}\t{mode}\t{side}\t{total / secs / 2**20:.0f}\t{cpu_ms / (total / 2**30):.1f}\t{cpu_ms * 1000 / int(n):.1f}")
PY
    done
  done
done
echo "raw logs: $W"
