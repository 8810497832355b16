#!/usr/bin/env bash
# Side-by-side benchmark in ONE run on this machine (client, proxy and servers share it):
# keep-alive HTTPS, small responses, requests/s and p50/p99 for
#   direct to the sim enclave | a bare TCP relay (the ceiling for any proxy hop) |
#   ratls-proxy intercept | origination | sidecar route | nginx | haproxy | mitmproxy,
# (nginx and haproxy doing the sidecar job: bench/nginx.conf, bench/haproxy.cfg, no verification)
# then latency at concurrency 1, the cost of a new connection (verdict-cache hit vs miss),
# and the proxy's peak RSS. Loopback only; every run is bounded (DUR, default 10s).
#   bench/run.sh            (needs oha; mitmproxy optional: MITM=/path/to/mitmdump; nginx and
#                           haproxy are installed with apt-get when missing and run as root,
#                           else skipped with a notice)
#   DUR=10s C=32 ROUNDS=2   the defaults
source "$(dirname "$0")/common.sh"
DUR="${DUR:-10s}"; C="${C:-32}"
MITM="${MITM:-/tmp/mitm-venv/bin/mitmdump}"
start_sim
start_proxy
# The cheapest possible proxy hop: copies bytes, parses and verifies nothing (examples/tcp_relay.rs).
"$ROOT/target/release/examples/tcp_relay" 127.0.0.1:19500 127.0.0.1:19443 > "$W/relay.log" 2>&1 &
PIDS+=($!); RELAY_PID=$!
wait_port 19500

start_peers

out="$W/results.tsv"
# CPU time (user + system, clock ticks, all threads) of processes, to charge each request its share.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# run NAME ARGS...: one oha run; MID (default the proxy; several pids separated by spaces) is
# the process in the middle whose CPU is charged to the requests, oha's own CPU is measured
# with /usr/bin/time when present.
run() {
  local name=$1; shift
  local mid=() p0 s0 p1 s1 timer=()
  read -ra mid <<< "${MID:-$PROXY_PID}"
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%U %S" -o "$W/$name.time")
  p0=$(ticks "${mid[@]}"); s0=$(ticks "$SIM_PID")
  "${timer[@]}" oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$C" "$@" > "$W/$name.json"
  p1=$(ticks "${mid[@]}"); s1=$(ticks "$SIM_PID")
  echo -e "$(summarise "$name" "$W/$name.json")\t$(cpu_per_req "$W/$name.json" $((p1 - p0)) $((s1 - s0)) "$W/$name.time")" | tee -a "$out"
}
# µs of CPU per answered request for the process in the middle, the sim enclave and oha.
cpu_per_req() {
  python3 - "$@" "$(getconf CLK_TCK)" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1])); n = max(1, sum(d.get("statusCodeDistribution", {}).values()))
tick = 1e6 / float(sys.argv[5])
client = "-"
if os.path.exists(sys.argv[4]):
    u, s = open(sys.argv[4]).read().split()[-2:]
    client = f"{(float(u) + float(s)) * 1e6 / n:.1f}"
print(f"{int(sys.argv[2]) * tick / n:.1f}\t{int(sys.argv[3]) * tick / n:.1f}\t{client}")
PY
}

echo -e "scenario\treq/s\tp50_ms\tp99_ms\tstatus\terrors\tproxy_cpu_us/req\tsim_cpu_us/req\toha_cpu_us/req" | tee "$out"
if [ -x "$MITM" ]; then
  "$MITM" -q --listen-host 127.0.0.1 --listen-port 18081 --set confdir="$W/mitm" --ssl-insecure > "$W/mitm.log" 2>&1 &
  PIDS+=($!); MITM_PID=$!; wait_port 18081
else
  echo "mitmproxy not found at $MITM (python3 -m venv /tmp/mitm-venv && /tmp/mitm-venv/bin/pip install mitmproxy)" >&2
fi
# The shared 2-core box drifts by +-20% over a minute, so the keep-alive scenarios (mitmproxy
# too) are interleaved for ROUNDS rounds and each ratio uses the mean of its rounds.
for _ in $(seq 1 "${ROUNDS:-2}"); do
  run direct        --insecure https://127.0.0.1:19443/
  MID=$RELAY_PID run tcp_relay --insecure https://127.0.0.1:19500/
  run intercept     -x http://127.0.0.1:19128 --cacert "$CA" https://bench.enclave.test/
  run origination   -x http://127.0.0.1:19128 http://bench.enclave.test/
  run sidecar       http://127.0.0.1:19081/
  [ -n "$NGINX_MIDS" ] && MID=$NGINX_MIDS run nginx http://127.0.0.1:19082/
  [ -n "$HAPROXY_PID" ] && MID=$HAPROXY_PID run haproxy http://127.0.0.1:19083/
  if [ -n "${MITM_PID:-}" ]; then
    MID=$MITM_PID run mitmproxy -x http://127.0.0.1:18081 --insecure https://127.0.0.1:19443/
  fi
done
C=1 run direct_c1    --insecure https://127.0.0.1:19443/
C=1 run intercept_c1 -x http://127.0.0.1:19128 --cacert "$CA" https://bench.enclave.test/
C=1 run origination_c1 -x http://127.0.0.1:19128 http://bench.enclave.test/
C=1 run sidecar_c1   http://127.0.0.1:19081/
[ -n "$NGINX_MIDS" ] && MID=$NGINX_MIDS C=1 run nginx_c1 http://127.0.0.1:19082/
[ -n "$HAPROXY_PID" ] && MID=$HAPROXY_PID C=1 run haproxy_c1 http://127.0.0.1:19083/
echo
echo "proxy peak RSS: $(( $(hwm_kb "$PROXY_PID") / 1024 )) MiB"
"$ROOT/target/release/examples/conn_cost" 300
python3 - "$out" <<'PY'
import sys
lines = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith("scenario")]
rows = {l[0]: l for l in lines}
def rps(k):
    v = [float(l[1]) for l in lines if l[0] == k]
    return sum(v) / len(v) if v else None
d = rps("direct")
ceiling = rps("tcp_relay")
print()
if d and ceiling: print(f"tcp_relay / direct = {ceiling/d:.2f}x (the ceiling for any proxy that adds a TCP hop here)")
for k in ("intercept", "origination", "sidecar"):
    if d and rps(k): print(f"{k} / direct = {rps(k)/d:.2f}x" + (f" ({rps(k)/ceiling:.2f}x the bare relay)" if ceiling else ""))
for peer in ("nginx", "haproxy"):
    if rps(peer):
        print(f"{peer}: {rps(peer):.0f} req/s; " + ", ".join(
            f"{k} / {peer} = {rps(k)/rps(peer):.2f}x" for k in ("sidecar", "origination", "intercept") if rps(k)))
if rps("mitmproxy"): print(f"intercept / mitmproxy = {rps('intercept')/rps('mitmproxy'):.0f}x")
else: print("intercept / mitmproxy: skipped (no mitmproxy)")
if "direct_c1" in rows:
    for k in ("intercept", "origination", "sidecar", "nginx", "haproxy"):
        if k + "_c1" in rows:
            print(f"added p50 at concurrency 1, {k} = {float(rows[k + '_c1'][2]) - float(rows['direct_c1'][2]):.3f} ms")
PY
echo "raw results: $W"
