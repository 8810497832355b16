#!/usr/bin/env bash
# Where the CPU per request goes: ratls-proxy (sidecar route, origination, intercept) against
# nginx and haproxy doing the sidecar job (bench/nginx.conf, bench/haproxy.cfg), one scenario at
# a time under the same oha load (keep-alive, C connections, DUR). Per answered request, for
# the process in the middle (all its threads; nginx: master + workers): CPU µs split into user
# and kernel (/proc/PID/stat 14, 15), context switches (voluntary + involuntary, summed over
# /proc/PID/task/*/status), minor page faults (/proc/PID/stat 10), and `perf stat`'s
# task-clock / context-switches / page-faults when perf is present. Then `perf record -g`
# (PERF_DUR) of the proxy's sidecar route, nginx and haproxy, and their top symbols.
#   bench/peers_profile.sh        DUR=10s C=32 PERF_DUR=6 by default; raw files in the work dir
source "$(dirname "$0")/common.sh"
DUR="${DUR:-10s}"; C="${C:-32}"; PERF_DUR="${PERF_DUR:-6}"
start_sim
start_proxy
start_peers
secs="${DUR%s}"
sum_stat() { local t=0 p; for p in "${@:2}"; do t=$((t + $(awk -v f="$1" '{print $f}' "/proc/$p/stat"))); done; echo "$t"; }
csw() { local t=0 p; for p in "$@"; do t=$((t + $(cat /proc/"$p"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'))); done; echo "$t"; }
out="$W/profile.tsv"
echo -e "scenario\treq/s\tcpu_us/req\tuser_us/req\tsys_us/req\tctxsw/req\tminflt/req\tperf: task-clock_us/req\tperf: ctxsw/req\tperf: faults/req" | tee "$out"
# measure NAME "PIDS" OHA_ARGS...
measure() {
  local name=$1 pids=() u0 k0 c0 f0 u1 k1 c1 f1 perfpid=""; read -ra pids <<< "$2"; shift 2
  if command -v perf >/dev/null; then
    perf stat -x, -e task-clock,context-switches,page-faults -p "$(echo "${pids[@]}" | tr ' ' ,)" \
      -o "$W/$name.perfstat" -- sleep "$secs" > /dev/null 2>&1 &
    perfpid=$!
  fi
  u0=$(sum_stat 14 "${pids[@]}"); k0=$(sum_stat 15 "${pids[@]}"); c0=$(csw "${pids[@]}"); f0=$(sum_stat 10 "${pids[@]}")
  oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$C" "$@" > "$W/$name.json"
  u1=$(sum_stat 14 "${pids[@]}"); k1=$(sum_stat 15 "${pids[@]}"); c1=$(csw "${pids[@]}"); f1=$(sum_stat 10 "${pids[@]}")
  [ -n "$perfpid" ] && wait "$perfpid"
  python3 - "$name" "$W/$name.json" "$((u1 - u0))" "$((k1 - k0))" "$((c1 - c0))" "$((f1 - f0))" "$W/$name.perfstat" "$(getconf CLK_TCK)" <<'PY' | tee -a "$out"
import json, os, sys
name, path, du, dk, dc, df, perf, hz = sys.argv[1:]
d = json.load(open(path)); n = max(1, sum(d.get("statusCodeDistribution", {}).values()))
tick = 1e6 / float(hz)
row = [name, f"{d['summary']['requestsPerSec']:.0f}", f"{(int(du) + int(dk)) * tick / n:.1f}",
       f"{int(du) * tick / n:.1f}", f"{int(dk) * tick / n:.1f}", f"{int(dc) / n:.3f}", f"{int(df) / n:.4f}"]
ev = {}
if os.path.exists(perf):
    for line in open(perf):
        f = line.strip().split(",")
        if len(f) > 2 and f[0] and f[0][0].isdigit():
            ev[f[2]] = float(f[0])
# perf stat runs for the whole DUR, oha's requests too: per request over oha's count.
row += [f"{ev['task-clock'] * 1e3 / n:.1f}" if "task-clock" in ev else "-",
        f"{ev['context-switches'] / n:.3f}" if "context-switches" in ev else "-",
        f"{ev['page-faults'] / n:.4f}" if "page-faults" in ev else "-"]
print("\t".join(row))
PY
}
measure sidecar "$PROXY_PID" "http://127.0.0.1:$ROUTE_PORT/"
measure origination "$PROXY_PID" -x "http://127.0.0.1:$PROXY_PORT" http://bench.enclave.test/
measure intercept "$PROXY_PID" -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/
[ -n "$NGINX_MIDS" ] && measure nginx "$NGINX_MIDS" "http://127.0.0.1:$NGINX_PORT/"
[ -n "$HAPROXY_PID" ] && measure haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT/"
# record NAME "PIDS" OHA_ARGS...: perf record -g of the middle process during PERF_DUR of load.
record() {
  local name=$1 pids; pids=$(echo "$2" | xargs | tr ' ' ,); shift 2
  oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$((PERF_DUR + 2))s" -c "$C" "$@" > /dev/null &
  local oha=$!
  sleep 1
  perf record -q -g -p "$pids" -o "$W/$name.perf.data" -- sleep "$PERF_DUR" > /dev/null 2>&1 || true
  wait "$oha" || true
  echo "== $name: share of samples by object, then top symbols (self)"
  perf report -i "$W/$name.perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -n '1,8p'
  perf report -i "$W/$name.perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -n '1,25p'
}
if command -v perf >/dev/null; then
  record sidecar "$PROXY_PID" "http://127.0.0.1:$ROUTE_PORT/" | tee "$W/perf-sidecar.txt"
  [ -n "$NGINX_MIDS" ] && record nginx "$NGINX_MIDS" "http://127.0.0.1:$NGINX_PORT/" | tee "$W/perf-nginx.txt"
  [ -n "$HAPROXY_PID" ] && record haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT/" | tee "$W/perf-haproxy.txt"
fi
echo "raw results: $W"
