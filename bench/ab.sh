#!/usr/bin/env bash
# A/B: two proxy builds side by side in ONE run, so a change is judged against the same noise.
# Rounds of: direct to the sim enclave, then keep-alive intercept through A, then through B;
# each line charges every answered request its share of that proxy's and the enclave's CPU.
#   bench/ab.sh BIN_A BIN_B          e.g. a copy of the old build vs target/release/ratls-proxy
#   ROUNDS=3 DUR=8s C=32 OHA_EXTRA=--disable-keepalive bench/ab.sh ...   (the defaults, and a flag)
# A command works as a "binary" too: bench/ab.sh "env TOKIO_WORKER_THREADS=1 $PWD/target/release/ratls-proxy" ...
# MODES=intercept (default) or any of "intercept origination sidecar": each mode is run through
# A then B in every round (e.g. MODES="origination sidecar" bench/ab.sh A B).
# REQ_PATH=/ (default) is what every request asks for: REQ_PATH='/bytes?n=67108864' makes each
# one a 64 MiB download (the sim's /bytes), to weigh per-chunk work.
source "$(dirname "$0")/common.sh"
[ $# -eq 2 ] || { echo "usage: bench/ab.sh BIN_A BIN_B" >&2; exit 2; }
DUR="${DUR:-8s}"; C="${C:-32}"; ROUNDS="${ROUNDS:-3}"; MODES="${MODES:-intercept}"; P="${REQ_PATH:-/}"
start_sim
# shellcheck disable=SC2086 # a "binary" may be a command with arguments
start_proxy $PROXY_PORT $ADMIN_PORT $ROUTE_PORT $1; PA=$PROXY_PID
# shellcheck disable=SC2086
start_proxy $((PROXY_PORT + PORT_STEP)) $((ADMIN_PORT + PORT_STEP)) $((ROUTE_PORT + PORT_STEP)) $2; PB=$PROXY_PID
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_req() { # JSON PROXY_TICKS SIM_TICKS -> "proxy_us sim_us"
  python3 - "$@" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); n = max(1, sum(d.get("statusCodeDistribution", {}).values()))
t = 1e6 / float(sys.argv[4])
print(f"{int(sys.argv[2]) * t / n:.1f}\t{int(sys.argv[3]) * t / n:.1f}")
PY
}
echo -e "scenario\treq/s\tp50_ms\tp99_ms\tstatus\terrors\tproxy_cpu_us/req\tsim_cpu_us/req"
for r in $(seq 1 "$ROUNDS"); do
  # A then B in odd rounds, B then A in even ones: neither side always runs first.
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  oha --no-tui --no-pre-lookup --ipv4 --insecure --output-format json -z "$DUR" -c "$C" "https://127.0.0.1:$SIM_PORT$P" > "$W/d.json"
  summarise direct "$W/d.json"
  for mode in $MODES; do
    for side in $order; do
      if [ $side = A ]; then port=$PROXY_PORT; route=$ROUTE_PORT; pid=$PA; else port=$((PROXY_PORT + PORT_STEP)); route=$((ROUTE_PORT + PORT_STEP)); pid=$PB; fi
      case $mode in
        intercept) args=(-x "http://127.0.0.1:$port" --cacert "$CA" "https://bench.enclave.test$P") ;;
        origination) args=(-x "http://127.0.0.1:$port" "http://bench.enclave.test$P") ;;
        sidecar) args=("http://127.0.0.1:$route$P") ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
      esac
      p0=$(ticks "$pid"); s0=$(ticks "$SIM_PID")
      # shellcheck disable=SC2086
      oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$C" ${OHA_EXTRA:-} \
        "${args[@]}" > "$W/$side.json"
      p1=$(ticks "$pid"); s1=$(ticks "$SIM_PID")
      echo -e "$(summarise "${mode}_$side" "$W/$side.json")\t$(per_req "$W/$side.json" $((p1 - p0)) $((s1 - s0)))"
    done
  done
done
echo "raw results: $W"
