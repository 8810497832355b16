#!/usr/bin/env bash
# Counts per request that do not depend on how busy the box is: the same fixed number of
# requests (oha -n N) through each proxy build or configuration in turn, interleaved by round,
# and per answered request the proxy's CPU µs (all threads, /proc/PID/stat 14+15), context
# switches of all its threads and of jemalloc's background thread alone (voluntary +
# involuntary, /proc/PID/task/*/status), minor page faults (/proc/PID/stat 10), and its
# high-water RSS (VmHWM) at the end.
#   bench/counts.sh CMD_A CMD_B [CMD_C ...]   each a binary or a command, as in bench/ab.sh:
#   bench/counts.sh target/release/ratls-proxy "env _RJEM_MALLOC_CONF=background_thread:false $PWD/target/release/ratls-proxy"
#   N=20000 C=32 ROUNDS=3 MODES="intercept origination sidecar" (the defaults)
#   FRESH=1 C=1: a lone keep-alive client of a fresh proxy in each run (see `fresh` below)
# STRACE=1 adds a last pass per command under `strace -c -f` (syscalls per request; strace
# slows the proxy down, so CPU is not read in that pass).
# The last column gives each thread's context switches per request (threads that switched):
# at C=1 it shows which threads a lone request wakes. Each run opens new client connections.
# PEERS=1 adds nginx and haproxy doing the sidecar job (bench/nginx.conf, bench/haproxy.cfg)
# as modes "nginx" and "haproxy", counted the same way (master + workers for nginx).
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || { echo "usage: bench/counts.sh CMD_A CMD_B [CMD ...]" >&2; exit 2; }
N="${N:-20000}"; C="${C:-32}"; ROUNDS="${ROUNDS:-3}"; MODES="${MODES:-intercept origination sidecar}"
start_sim
if [ "${PEERS:-0}" = 1 ]; then start_peers; fi
PP=()
# fresh INDEX [MODE]: (re)starts command INDEX's proxy, then one request (intercept, or one
# of MODE) on a connection of its own, so the CA, the verdict and the pool exist before
# anything is counted.
fresh() {
  local i=$1 cmd="${CMDS[$1]}" old="${PP[$1]:-}"
  if [ -n "$old" ]; then kill "$old" 2>/dev/null || true; wait "$old" 2>/dev/null || true; fi
  # shellcheck disable=SC2086 # a "binary" may be a command with arguments
  start_proxy $((PROXY_PORT + PORT_STEP * i)) $((ADMIN_PORT + PORT_STEP * i)) $((ROUTE_PORT + PORT_STEP * i)) $cmd
  PP[i]=$PROXY_PID
  wait_port $((ROUTE_PORT + PORT_STEP * i))
  case ${2:-intercept} in
    sidecar) curl -s -o /dev/null "http://127.0.0.1:$((ROUTE_PORT + PORT_STEP * i))/warm" ;;
    origination) curl -s -o /dev/null -x "http://127.0.0.1:$((PROXY_PORT + PORT_STEP * i))" http://bench.enclave.test/warm ;;
    *) curl -s -o /dev/null -x "http://127.0.0.1:$((PROXY_PORT + PORT_STEP * i))" --cacert "$CA" https://bench.enclave.test/warm ;;
  esac
}
CMDS=("$@")
for i in "${!CMDS[@]}"; do fresh "$i"; done
# stat_f "PIDS" FIELD: the sum of a /proc/PID/stat field over the processes.
stat_f() { local t=0 p; for p in $1; do t=$((t + $(awk -v f="$2" '{print $f}' "/proc/$p/stat"))); done; echo "$t"; }
# csw "PIDS" [COMM]: context switches of all their threads, or of the threads named COMM.
csw() {
  local t=0 d c p
  for p in $1; do
    for d in /proc/"$p"/task/*; do
      c=$(cat "$d/comm" 2>/dev/null) || continue
      [ -n "${2:-}" ] && [ "$c" != "$2" ] && continue
      t=$((t + $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$d/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
# per_thread "PIDS": "name:tid switches" for each of their threads.
per_thread() {
  local d p
  for p in $1; do
    for d in /proc/"$p"/task/*; do
      echo "$(tr ' ' _ < "$d/comm" 2>/dev/null):${d##*/} $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$d/status" 2>/dev/null || echo 0)"
    done
  done
}
# pids_for MODE INDEX: the process(es) in the middle.
pids_for() {
  case $1 in
    nginx) echo "$NGINX_MIDS" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    *) echo "${PP[$2]}" ;;
  esac
}
args_for() { # MODE INDEX
  local port=$((PROXY_PORT + PORT_STEP * $2)) route=$((ROUTE_PORT + PORT_STEP * $2))
  case $1 in
    intercept) echo "-x http://127.0.0.1:$port --cacert $CA https://bench.enclave.test/" ;;
    origination) echo "-x http://127.0.0.1:$port http://bench.enclave.test/" ;;
    sidecar) echo "http://127.0.0.1:$route/" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT/" ;;
    haproxy) echo "http://127.0.0.1:$HAPROXY_PORT/" ;;
    *) echo "unknown mode $1" >&2; exit 2 ;;
  esac
}
# The peers run once per round (they are not commands to compare), as index 0.
runs_for() { case $1 in nginx|haproxy) echo 0 ;; *) echo "${order[@]}" ;; esac; }
MODES_ALL="$MODES"; [ "${PEERS:-0}" = 1 ] && MODES_ALL="$MODES nginx haproxy"
echo -e "mode\tcmd\treq/s\tp50_ms\tcpu_us/req\tctxsw/req\tjemalloc_bg_ctxsw/req\tminflt/req\tstatus\tctxsw/req by thread"
for r in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round so no command always runs first.
  order=(); for k in $(seq 0 $(($# - 1))); do order+=($(((k + r - 1) % $#))); done
  for mode in $MODES_ALL; do
    for i in $(runs_for "$mode"); do
      # FRESH=1: a new proxy for each run, warmed by one request of the run's mode on a
      # connection of its own: the run's one client (C=1) is then the lone keep-alive client
      # of a proxy whose pooled connection another connection dialed, on whichever thread.
      [ "${FRESH:-0}" = 1 ] && [ "$mode" != nginx ] && [ "$mode" != haproxy ] && fresh "$i" "$mode"
      pid=$(pids_for "$mode" "$i")
      [ -n "$pid" ] || continue
      per_thread "$pid" > "$W/threads0"
      t0=$(( $(stat_f "$pid" 14) + $(stat_f "$pid" 15) )); c0=$(csw "$pid"); b0=$(csw "$pid" jemalloc_bg_thd); f0=$(stat_f "$pid" 10)
      # shellcheck disable=SC2046
      oha --no-tui --no-pre-lookup --ipv4 --output-format json -n "$N" -c "$C" $(args_for "$mode" "$i") > "$W/$mode-$i.json"
      t1=$(( $(stat_f "$pid" 14) + $(stat_f "$pid" 15) )); c1=$(csw "$pid"); b1=$(csw "$pid" jemalloc_bg_thd); f1=$(stat_f "$pid" 10)
      per_thread "$pid" > "$W/threads1"
      python3 - "$mode" "$i" "$W/$mode-$i.json" $((t1 - t0)) $((c1 - c0)) $((b1 - b0)) $((f1 - f0)) "$(getconf CLK_TCK)" "$W/threads0" "$W/threads1" <<'PY'
import json, sys
mode, i, path, dt, dc, db, df, hz, th0, th1 = sys.argv[1:]
d = json.load(open(path)); codes = d.get("statusCodeDistribution", {}); n = max(1, sum(codes.values()))
before = dict(l.split() for l in open(th0) if len(l.split()) == 2)
threads = []
for line in open(th1):
    f = line.split()
    if len(f) == 2 and int(f[1]) - int(before.get(f[0], f[1])) > 0:
        threads.append(f"{f[0].rsplit(':', 1)[0]} {(int(f[1]) - int(before.get(f[0], f[1]))) / n:.3f}")
p50 = d.get("latencyPercentiles", {}).get("p50")
p50 = "-" if p50 is None else f"{p50 * 1000:.3f}"
print(f"{mode}\t{i}\t{d['summary']['requestsPerSec']:.0f}\t{p50}\t{int(dt) * 1e6 / float(hz) / n:.1f}\t"
      f"{int(dc) / n:.3f}\t{int(db) / n:.4f}\t{int(df) / n:.4f}\t{json.dumps(codes)}\t{', '.join(threads)}")
PY
    done
  done
done
for i in "${!PP[@]}"; do echo "cmd $i (${*:$((i + 1)):1}): VmHWM $(( $(hwm_kb "${PP[$i]}") / 1024 )) MiB"; done
if [ "${STRACE:-0}" = 1 ]; then
  for i in "${!PP[@]}"; do
    for mode in $MODES_ALL; do
      [ "$i" != 0 ] && { [ "$mode" = nginx ] || [ "$mode" = haproxy ]; } && continue
      [ "${FRESH:-0}" = 1 ] && [ "$mode" != nginx ] && [ "$mode" != haproxy ] && fresh "$i" "$mode"
      pid=$(pids_for "$mode" "$i")
      [ -n "$pid" ] || continue
      # shellcheck disable=SC2046 # one -p per process
      strace -c -f $(for p in $pid; do echo "-p $p"; done) -o "$W/strace-$mode-$i.txt" &
      sp=$!; sleep 0.5
      # shellcheck disable=SC2046
      oha --no-tui --no-pre-lookup --ipv4 --output-format json -n "$N" -c "$C" $(args_for "$mode" "$i") > "$W/st-$mode-$i.json"
      kill -INT "$sp"; wait "$sp" 2>/dev/null || true
      python3 - "$mode" "$i" "$W/st-$mode-$i.json" "$W/strace-$mode-$i.txt" <<'PY'
import json, sys
mode, i, path, st = sys.argv[1:]
d = json.load(open(path)); n = max(1, sum(d.get("statusCodeDistribution", {}).values()))
rows = []
for line in open(st):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] not in ("total",):
        calls = int(f[3]); rows.append((calls, f[-1]))
tot = sum(c for c, _ in rows)
top = ", ".join(f"{name} {c / n:.3f}" for c, name in sorted(rows, reverse=True)[:8])
print(f"strace {mode} cmd {i}: {tot / n:.2f} syscalls/request: {top}")
PY
    done
  done
fi
echo "raw results: $W"
