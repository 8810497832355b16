#!/usr/bin/env bash
# Side-by-side benchmark in ONE run on this machine (client, proxy and servers share it):
# keep-alive HTTPS, small responses, requests/s and p50/p99 for
#   direct to the sim enclave | a bare TCP relay (the ceiling for any proxy hop) |
#   ratls-proxy intercept | origination | sidecar route | nginx | haproxy | mitmproxy,
# (nginx and haproxy doing the sidecar job: bench/nginx.conf, bench/haproxy.cfg, no verification)
# and the same at concurrency 1, then the cost of a new connection (verdict-cache hit vs miss)
# and the proxy's peak RSS. Loopback only; every run is bounded (ROUNDS x scenarios x DUR).
#   bench/run.sh            (needs oha; mitmproxy optional: MITM=/path/to/mitmdump; nginx and
#                           haproxy are installed with apt-get when missing and run as root,
#                           else skipped with a notice)
#   ROUNDS=8 DUR=3s DUR_C1=1s C=32   the defaults (about 5 minutes)
#   BENCH_PORT_BASE=21000            other ports (bench/ports.sh), to run beside another script
# How the figures are made (docs/benchmarks.md, "How the headline is measured from session 7"):
# every round runs every scenario once, C=32 then C=1, in a fixed order that reverses in even
# rounds (ABBA: each scenario's mean position is the same, so a steady drift cancels), peers
# placed next to the routes compared with them. A ratio is the median over rounds of the
# round's own ratio (the two measured minutes apart at most), with its min-max; the old
# ratio of means is printed beside it. bench/summary.py makes the report from results.tsv
# and noise.tsv (python3 bench/summary.py DIR re-reads a kept run).
source "$(dirname "$0")/common.sh"
DUR="${DUR:-3s}"; DUR_C1="${DUR_C1:-1s}"; C="${C:-32}"; ROUNDS="${ROUNDS:-8}"
MITM="${MITM:-/tmp/mitm-venv/bin/mitmdump}"
start_sim
start_proxy
# The cheapest possible proxy hop: copies bytes, parses and verifies nothing (examples/tcp_relay.rs).
"$ROOT/target/release/examples/tcp_relay" "127.0.0.1:$RELAY_PORT" "127.0.0.1:$SIM_PORT" > "$W/relay.log" 2>&1 &
PIDS+=($!); RELAY_PID=$!
wait_port "$RELAY_PORT"
start_peers
MITM_PID=""
if [ -x "$MITM" ]; then
  "$MITM" -q --listen-host 127.0.0.1 --listen-port "$MITM_PORT" --set confdir="$W/mitm" --ssl-insecure > "$W/mitm.log" 2>&1 &
  PIDS+=($!); MITM_PID=$!; wait_port "$MITM_PORT"
else
  echo "mitmproxy not found at $MITM (python3 -m venv /tmp/mitm-venv && /tmp/mitm-venv/bin/pip install mitmproxy)" >&2
fi

# The scenarios of one round, in their forward order: each peer sits next to a route it is
# compared with (nginx between intercept and the sidecar route, haproxy between the sidecar
# route and origination, mitmproxy next to intercept). NAME|MID|C|OHA ARGS; MID names the
# process(es) in the middle whose CPU each request is charged (- for none).
SCEN=(
  "direct|-|$C|--insecure https://127.0.0.1:$SIM_PORT/"
  "tcp_relay|$RELAY_PID|$C|--insecure https://127.0.0.1:$RELAY_PORT/"
)
[ -n "$MITM_PID" ] && SCEN+=("mitmproxy|$MITM_PID|$C|-x http://127.0.0.1:$MITM_PORT --insecure https://127.0.0.1:$SIM_PORT/")
SCEN+=("intercept|$PROXY_PID|$C|-x http://127.0.0.1:$PROXY_PORT --cacert $CA https://bench.enclave.test/")
[ -n "$NGINX_MIDS" ] && SCEN+=("nginx|$NGINX_MIDS|$C|http://127.0.0.1:$NGINX_PORT/")
SCEN+=("sidecar|$PROXY_PID|$C|http://127.0.0.1:$ROUTE_PORT/")
[ -n "$HAPROXY_PID" ] && SCEN+=("haproxy|$HAPROXY_PID|$C|http://127.0.0.1:$HAPROXY_PORT/")
SCEN+=("origination|$PROXY_PID|$C|-x http://127.0.0.1:$PROXY_PORT http://bench.enclave.test/")
# Concurrency 1, the same order.
SCEN+=(
  "direct_c1|-|1|--insecure https://127.0.0.1:$SIM_PORT/"
  "intercept_c1|$PROXY_PID|1|-x http://127.0.0.1:$PROXY_PORT --cacert $CA https://bench.enclave.test/"
)
[ -n "$NGINX_MIDS" ] && SCEN+=("nginx_c1|$NGINX_MIDS|1|http://127.0.0.1:$NGINX_PORT/")
SCEN+=("sidecar_c1|$PROXY_PID|1|http://127.0.0.1:$ROUTE_PORT/")
[ -n "$HAPROXY_PID" ] && SCEN+=("haproxy_c1|$HAPROXY_PID|1|http://127.0.0.1:$HAPROXY_PORT/")
SCEN+=("origination_c1|$PROXY_PID|1|-x http://127.0.0.1:$PROXY_PORT http://bench.enclave.test/")

# Every long-running process of ours, to tell our CPU from the rest of the box's.
OURS=("$SIM_PID" "$PROXY_PID" "$RELAY_PID")
[ -n "$MITM_PID" ] && OURS+=("$MITM_PID")
[ -n "$HAPROXY_PID" ] && OURS+=("$HAPROXY_PID")
read -ra nm <<< "$NGINX_MIDS"; OURS+=("${nm[@]}")

# utime stime (clock ticks, all threads) summed over PIDS.
ticks() { [ $# -gt 0 ] || { echo 0 0; return; }; local p; for p in "$@"; do cat "/proc/$p/stat"; done | awk '{u += $14; s += $15} END {print u + 0, s + 0}'; }
# The box: busy (user nice system irq softirq) steal total, in ticks, from /proc/stat's cpu line;
# then ours: our daemons' ticks and this script's waited-for children's (oha, curl, python).
box() {
  local d c
  d=$(ticks "${OURS[@]}" | awk '{print $1 + $2}')
  c=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$$/stat")
  awk -v ours=$((d + c)) '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, ours}' /proc/stat
}
noise="$W/noise.tsv"
echo -e "when\tround\tepoch_s\tbusy_ticks\tsteal_ticks\ttotal_ticks\tours_ticks\tloadavg_1m\tloadavg_5m" > "$noise"
mark() { # WHEN ROUND
  local b l; b=$(box); l=$(cut -d' ' -f1,2 /proc/loadavg)
  echo -e "$1\t$2\t$(date +%s.%N)\t${b// /$'\t'}\t${l// /$'\t'}" >> "$noise"
}

out="$W/results.tsv"
echo -e "round\tpos\tscenario\tconc\treq/s\tp50_ms\tp99_ms\tstatus\terrors\tmid_user_us/req\tmid_sys_us/req\tsim_cpu_us/req\toha_cpu_us/req" > "$out"
# run ROUND POS "NAME|MID|C|ARGS": one oha run, a line of results.tsv.
run() {
  local round=$1 pos=$2 name mid conc args m=() a=() u0 u1 s0 s1 timer=() dur="$DUR"
  IFS='|' read -r name mid conc args <<< "$3"
  [ "$conc" = 1 ] && dur="$DUR_C1"
  [ "$mid" = - ] || read -ra m <<< "$mid"
  read -ra a <<< "$args"
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%U %S" -o "$W/$name.time")
  u0=$(ticks "${m[@]}"); s0=$(ticks "$SIM_PID")
  "${timer[@]}" oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$dur" -c "$conc" "${a[@]}" > "$W/$name.json"
  u1=$(ticks "${m[@]}"); s1=$(ticks "$SIM_PID")
  python3 "$ROOT/bench/summary.py" --line "$round" "$pos" "$name" "$conc" "$W/$name.json" "$u0" "$u1" "$s0" "$s1" "$W/$name.time" "$(getconf CLK_TCK)" >> "$out"
  rm -f "$W/$name.time"
}

echo "bench/run.sh: ROUNDS=$ROUNDS DUR=$DUR DUR_C1=$DUR_C1 C=$C BENCH_PORT_BASE=$BENCH_PORT_BASE, proxy $BIN"
n=${#SCEN[@]}
mark start 0
for r in $(seq 1 "$ROUNDS"); do
  # Odd rounds forward, even rounds backward.
  for k in $(seq 0 $((n - 1))); do
    i=$k; [ $((r % 2)) = 0 ] && i=$((n - 1 - k))
    run "$r" "$k" "${SCEN[$i]}"
  done
  mark round "$r"
  echo "round $r of $ROUNDS done ($(date -u +%H:%M:%S))" >&2
done
mark end "$ROUNDS"
echo
echo "proxy peak RSS: $(( $(hwm_kb "$PROXY_PID") / 1024 )) MiB"
"$ROOT/target/release/examples/conn_cost" 300
echo
python3 "$ROOT/bench/summary.py" "$W"
echo "raw results: $W (results.tsv, noise.tsv; python3 bench/summary.py $W reports again)"
