#!/usr/bin/env bash
# Side-by-side benchmark in ONE run on this machine (client, proxy and servers share it):
# keep-alive HTTPS, small responses, requests/s and p50/p99 for
#   direct to the sim enclave | ratls-proxy intercept | origination | sidecar route | mitmproxy,
# then latency at concurrency 1, the cost of a new connection (verdict-cache hit vs miss),
# and the proxy's peak RSS. Loopback only; every run is bounded (DUR, default 10s).
#   bench/run.sh            (needs oha; mitmproxy optional: MITM=/path/to/mitmdump)
source "$(dirname "$0")/common.sh"
DUR="${DUR:-10s}"; C="${C:-32}"
MITM="${MITM:-/tmp/mitm-venv/bin/mitmdump}"
start_sim
start_proxy
out="$W/results.tsv"
run() { local name=$1; shift; oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$C" "$@" > "$W/$name.json"; summarise "$name" "$W/$name.json" | tee -a "$out"; }

echo -e "scenario\treq/s\tp50_ms\tp99_ms\tstatus\terrors" | tee "$out"
run direct        --insecure https://127.0.0.1:19443/
run intercept     -x http://127.0.0.1:19128 --cacert "$CA" https://bench.enclave.test/
run origination   -x http://127.0.0.1:19128 http://bench.enclave.test/
run sidecar       http://127.0.0.1:19081/
if [ -x "$MITM" ]; then
  "$MITM" -q --listen-host 127.0.0.1 --listen-port 18081 --set confdir="$W/mitm" --ssl-insecure > "$W/mitm.log" 2>&1 &
  PIDS+=($!); wait_port 18081
  run mitmproxy   -x http://127.0.0.1:18081 --insecure https://127.0.0.1:19443/
else
  echo "mitmproxy not found at $MITM (python3 -m venv /tmp/mitm-venv && /tmp/mitm-venv/bin/pip install mitmproxy)" >&2
fi
C=1 run direct_c1    --insecure https://127.0.0.1:19443/
C=1 run intercept_c1 -x http://127.0.0.1:19128 --cacert "$CA" https://bench.enclave.test/
echo
echo "proxy peak RSS: $(( $(hwm_kb "$PROXY_PID") / 1024 )) MiB"
"$ROOT/target/release/examples/conn_cost" 300
python3 - "$out" <<'PY'
import sys
rows = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith("scenario")}
rps = lambda k: float(rows[k][1]) if k in rows else None
d = rps("direct")
print()
for k in ("intercept", "origination", "sidecar"):
    if d and rps(k): print(f"{k} / direct = {rps(k)/d:.2f}x")
if rps("mitmproxy"): print(f"intercept / mitmproxy = {rps('intercept')/rps('mitmproxy'):.0f}x")
if "direct_c1" in rows and "intercept_c1" in rows:
    print(f"added p50 at concurrency 1 = {float(rows['intercept_c1'][2]) - float(rows['direct_c1'][2]):.3f} ms")
PY
echo "raw results: $W"
