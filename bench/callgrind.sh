#!/usr/bin/env bash
# Instructions per request, independent of the box's load: the proxy (sidecar route,
# origination, intercept) and nginx doing the sidecar job (bench/nginx.conf, one process:
# no master, one worker) under `valgrind --tool=callgrind`, counters zeroed after a warm-up,
# then exactly N requests (oha -n N -c C), then dumped: Ir / N, and each one's top functions.
#   bench/callgrind.sh                 N=20000 C=32 MODES="sidecar origination intercept nginx"
#   PROXY_BIN=/path/to/other/build bench/callgrind.sh
#   STEADY=1 bench/callgrind.sh        jemalloc's time-based purging off in the proxy, whose
#     timing under valgrind moves a count by a few hundred instructions per request
# Raw callgrind.out files stay in the work dir, each with its inclusive annotation
# (NAME.annotate.txt). A count marked "+handshake" had an upstream TLS handshake (with its
# quote) in its window, a few hundred instructions per request at N=5000: compare runs
# without it.
source "$(dirname "$0")/common.sh"
[ "${STEADY:-0}" = 1 ] && export _RJEM_MALLOC_CONF="${_RJEM_MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}"
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
N="${N:-20000}"; C="${C:-32}"; MODES="${MODES:-sidecar origination intercept nginx}"
start_sim
# wait_up PORT: valgrind starts slowly.
wait_up() { for _ in $(seq 1 600); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# count NAME PID OHA_ARGS...: zero, N requests, dump; prints Ir per request.
count() {
  local name=$1 pid=$2; shift 2
  oha --no-tui --no-pre-lookup --ipv4 --output-format json -n 2000 -c "$C" "$@" > /dev/null
  callgrind_control -z "$pid" > /dev/null
  oha --no-tui --no-pre-lookup --ipv4 --output-format json -n "$N" -c "$C" "$@" > "$W/$name.json"
  callgrind_control -d "$name" "$pid" > /dev/null
  sleep 1
  local out; out=$(ls -t "$W"/callgrind.out.* | head -1)
  python3 - "$name" "$W/$name.json" "$out" <<'PY'
import json, re, sys
name, js, out = sys.argv[1:]
d = json.load(open(js)); codes = d.get("statusCodeDistribution", {}); n = max(1, sum(codes.values()))
ir = 0
for line in open(out):
    m = re.match(r"(summary|totals):\s+(\d+)", line)
    if m: ir = int(m.group(2))
hs = any("x25519_scalar_mult" in line for line in open(out))
print(f"{name}\t{n} answered {json.dumps(codes)}\t{ir / n:,.0f} instructions/request{' +handshake' if hs else ''}\t{out}")
PY
  # Self instructions read from the dump itself (bench/callgrind_self.py: callgrind_annotate
  # lists the frames still on the stack at a live dump as 100% self); the inclusive view beside.
  python3 "$ROOT/bench/callgrind_self.py" "$out" 30 > "$W/$name.top.txt"
  callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$out" > "$W/$name.annotate.txt" 2>&1 || true
}
VG=(valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out.%p" --dump-instr=no --collect-jumps=no)
for mode in $MODES; do
  case $mode in
    nginx)
      mkdir -p "$W/nginx"
      nuser=""; [ "$(id -u)" = 0 ] && nuser="user root;"
      render "$ROOT/bench/nginx.conf" "127.0.0.1:$NGINX_PORT" "$nuser" \
        | sed -e 's/^master_process on;/master_process off;/' -e 's/^worker_processes 2;/worker_processes 1;/' > "$W/nginx/nginx.conf"
      "${VG[@]}" "$(command -v nginx || echo /usr/sbin/nginx)" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" > "$W/nginx-vg.log" 2>&1 &
      PIDS+=($!); vp=$!
      wait_up "$NGINX_PORT"
      count nginx "$vp" "http://127.0.0.1:$NGINX_PORT/"
      kill "$vp"; wait "$vp" 2>/dev/null || true
      ;;
    sidecar|origination|intercept)
      start_proxy "$PROXY_PORT" "$ADMIN_PORT" "$ROUTE_PORT" "${VG[@]}" "$BIN" 2>/dev/null || wait_up "$PROXY_PORT"
      vp=$PROXY_PID
      wait_up "$ROUTE_PORT"
      curl -s -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/warm
      case $mode in
        sidecar) count sidecar "$vp" "http://127.0.0.1:$ROUTE_PORT/" ;;
        origination) count origination "$vp" -x "http://127.0.0.1:$PROXY_PORT" http://bench.enclave.test/ ;;
        intercept) count intercept "$vp" -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/ ;;
      esac
      kill "$vp"; wait "$vp" 2>/dev/null || true
      ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
for f in "$W"/*.top.txt; do echo "== $(basename "$f" .top.txt): top functions (self instructions)"; cat "$f"; done
echo "raw results: $W"
