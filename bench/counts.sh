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
# STRACE=1 adds a last pass per command under `strace -c -f` (syscalls per request; strace
# slows the proxy down, so CPU is not read in that pass).
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || { echo "usage: bench/counts.sh CMD_A CMD_B [CMD ...]" >&2; exit 2; }
N="${N:-20000}"; C="${C:-32}"; ROUNDS="${ROUNDS:-3}"; MODES="${MODES:-intercept origination sidecar}"
start_sim
PP=()
for i in $(seq 0 $(($# - 1))); do
  cmd="${*:$((i + 1)):1}"
  # shellcheck disable=SC2086 # a "binary" may be a command with arguments
  start_proxy $((19128 + 10 * i)) $((19129 + 10 * i)) $((19081 + 10 * i)) $cmd
  PP+=("$PROXY_PID")
  # One request so the CA, the verdict and the pool exist before anything is counted.
  curl -s -o /dev/null -x "http://127.0.0.1:$((19128 + 10 * i))" --cacert "$CA" https://bench.enclave.test/warm
done
stat_f() { awk -v f="$2" '{print $f}' "/proc/$1/stat"; }
# csw PID [COMM]: context switches of all threads, or of the threads named COMM.
csw() {
  local t=0 d c
  for d in /proc/"$1"/task/*; do
    c=$(cat "$d/comm" 2>/dev/null) || continue
    [ -n "${2:-}" ] && [ "$c" != "$2" ] && continue
    t=$((t + $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$d/status" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
args_for() { # MODE INDEX
  local port=$((19128 + 10 * $2)) route=$((19081 + 10 * $2))
  case $1 in
    intercept) echo "-x http://127.0.0.1:$port --cacert $CA https://bench.enclave.test/" ;;
    origination) echo "-x http://127.0.0.1:$port http://bench.enclave.test/" ;;
    sidecar) echo "http://127.0.0.1:$route/" ;;
    *) echo "unknown mode $1" >&2; exit 2 ;;
  esac
}
echo -e "mode\tcmd\treq/s\tcpu_us/req\tctxsw/req\tjemalloc_bg_ctxsw/req\tminflt/req\tstatus"
for r in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round so no command always runs first.
  order=(); for k in $(seq 0 $(($# - 1))); do order+=($(((k + r - 1) % $#))); done
  for mode in $MODES; do
    for i in "${order[@]}"; do
      pid=${PP[$i]}
      t0=$(( $(stat_f "$pid" 14) + $(stat_f "$pid" 15) )); c0=$(csw "$pid"); b0=$(csw "$pid" jemalloc_bg_thd); f0=$(stat_f "$pid" 10)
      # shellcheck disable=SC2046
      oha --no-tui --no-pre-lookup --ipv4 --output-format json -n "$N" -c "$C" $(args_for "$mode" "$i") > "$W/$mode-$i.json"
      t1=$(( $(stat_f "$pid" 14) + $(stat_f "$pid" 15) )); c1=$(csw "$pid"); b1=$(csw "$pid" jemalloc_bg_thd); f1=$(stat_f "$pid" 10)
      python3 - "$mode" "$i" "$W/$mode-$i.json" $((t1 - t0)) $((c1 - c0)) $((b1 - b0)) $((f1 - f0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
mode, i, path, dt, dc, db, df, hz = sys.argv[1:]
d = json.load(open(path)); codes = d.get("statusCodeDistribution", {}); n = max(1, sum(codes.values()))
print(f"{mode}\t{i}\t{d['summary']['requestsPerSec']:.0f}\t{int(dt) * 1e6 / float(hz) / n:.1f}\t"
      f"{int(dc) / n:.3f}\t{int(db) / n:.4f}\t{int(df) / n:.4f}\t{json.dumps(codes)}")
PY
    done
  done
done
for i in "${!PP[@]}"; do echo "cmd $i (${*:$((i + 1)):1}): VmHWM $(( $(hwm_kb "${PP[$i]}") / 1024 )) MiB"; done
if [ "${STRACE:-0}" = 1 ]; then
  for i in "${!PP[@]}"; do
    for mode in $MODES; do
      strace -c -f -p "${PP[$i]}" -o "$W/strace-$mode-$i.txt" &
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
