#!/usr/bin/env bash
# Cost against the number of [[enclave]] entries, and against the size of the audit trail
# (issue 31). One sim enclave behind every entry; each entry names one exact host and one
# wildcard (`app<i>.exact.test`, `*.w<i>.wild.test`), so N entries are 2N patterns. For each
# N and each binary, in turn (A/B interleaved in one run, so a loaded box loads both alike):
#   check   `config check` of the file (load and validate)
#   start   process start to the proxy port accepting
#   reload  POST /reload answered (the same file again: a whole new generation)
#   req/s   origination (`GET http://host/` through the proxy) to the LAST exact host and to a
#           host under the LAST wildcard: C connections for DUR seconds (oha when installed,
#           else examples/http_load.rs)
#   RSS     VmRSS after the load, and VmHWM
# Then the audit trail: a valid hash-chained trail of AUDIT_MB MiB (1024 unless the disk
# would keep less than 20 GB free: then the largest size that keeps it, said in the output),
# the proxy's start time and VmHWM with it and with an empty trail, after a SIGUSR1 reopen,
# and `audit verify` (time, its max RSS, throughput).
#
#   bench/entries.sh                     this build only
#   BIN_A=/path/to/main/ratls-proxy bench/entries.sh    A (e.g. main) against this build (B)
#   ENTRIES="1 1000 10000 100000" DUR=8 C=16 ROUNDS=1 AUDIT_MB=1024 (0: no trail) START_TIMEOUT=120
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/bench/ports.sh"
W="$(mktemp -d /tmp/ratls-entries.XXXXXX)"
ENTRIES="${ENTRIES:-1 1000 10000 100000}"
DUR="${DUR:-8}"; C="${C:-16}"; ROUNDS="${ROUNDS:-1}"; START_TIMEOUT="${START_TIMEOUT:-120}"
BIN_B="${BIN_B:-$ROOT/target/release/ratls-proxy}"
BINS=(); NAMES=()
if [ -n "${BIN_A:-}" ]; then BINS+=("$BIN_A"); NAMES+=(A); fi
BINS+=("$BIN_B"); NAMES+=(B)
SIM="$ROOT/target/release/examples/sim_enclave"
LOAD="$ROOT/target/release/examples/http_load"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --quiet --bin ratls-proxy --example sim_enclave --example http_load)
ulimit -n 65536 2>/dev/null || true

port_up() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
now() { date +%s.%N; }
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { echo $(( $1 / 1024 )); }

"$SIM" --listen "127.0.0.1:$SIM_PORT" --pki-dir "$W/pki" --quiet > "$W/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do port_up "$SIM_PORT" && break; sleep 0.05; done

# config N [AUDIT_PATH]: a configuration with N entries (written once per N).
config() {
  local n=$1 audit=${2:-} f="$W/entries-$1${2:+-audit}.toml" m
  m=$(printf 'e1%.0s' $(seq 32))
  {
    printf 'listen = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n' "$PROXY_PORT" "$ADMIN_PORT"
    printf '[limits]\nmax_connections = 8192\n[ca]\ndir = "%s/ca"\n' "$W"
    printf '[trust]\nroot_ca = "%s/pki/root.pem"\n[collateral]\nsource = "%s/pki/collateral.json"\n' "$W" "$W"
    [ -z "$audit" ] || printf '[audit]\npath = "%s"\n' "$audit"
    awk -v n="$n" -v m="$m" -v sim="$SIM_PORT" 'BEGIN { for (i = 0; i < n; i++)
      printf "[[enclave]]\nhosts = [\"app%d.exact.test\", \"*.w%d.wild.test\"]\nmrenclave = [\"%s\"]\nconnect_to = \"127.0.0.1:%d\"\n", i, i, m, sim }'
  } > "$f"
  echo "$f"
}

# start BIN CONFIG: starts the proxy; sets PROXY_PID and STARTED (seconds, or "timeout").
start() {
  local t0 t1
  t0=$(now)
  RUST_LOG=warn "$1" run --config "$2" > "$W/proxy.log" 2>&1 &
  PROXY_PID=$!; PIDS+=("$PROXY_PID")
  while ! port_up "$PROXY_PORT"; do
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then cat "$W/proxy.log" >&2; STARTED=failed; return 1; fi
    if (( $(echo "$(now) - $t0 > $START_TIMEOUT" | bc) )); then STARTED="timeout(>${START_TIMEOUT}s)"; return 1; fi
    sleep 0.01
  done
  t1=$(now); STARTED=$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")
}
stop() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; while port_up "$PROXY_PORT"; do sleep 0.05; done; }

load() {
  if command -v oha > /dev/null; then
    oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "${DUR}s" -c "$C" -x "http://127.0.0.1:$PROXY_PORT" "http://$1/" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f" % d["summary"]["requestsPerSec"])'
  else
    "$LOAD" "127.0.0.1:$PROXY_PORT" "$1" "$C" "$DUR" | cut -f1
  fi
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); load: $(command -v oha > /dev/null && echo oha || echo examples/http_load) -c $C for ${DUR}s"
printf 'entries\tbinary\tcheck_s\tstart_s\treload_s\treq/s_exact\treq/s_wildcard\trss_MiB\thwm_MiB\n'
for n in $ENTRIES; do config "$n" > /dev/null; done
# Rounds outside, sizes and binaries inside: each round compares them all under the same load.
for _ in $(seq "$ROUNDS"); do
  for n in $ENTRIES; do
    cfg="$W/entries-$n.toml"
    last=$((n - 1))
    for i in "${!BINS[@]}"; do
      t0=$(now)
      check=$(timeout "$START_TIMEOUT" "${BINS[$i]}" config check "$cfg" > /dev/null 2>&1 \
        && printf '%.2f' "$(echo "$(now) - $t0" | bc)" || echo "timeout/failed")
      if ! start "${BINS[$i]}" "$cfg"; then
        printf '%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n' "$n" "${NAMES[$i]}" "$check" "$STARTED"; stop; continue
      fi
      curl -s -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" "http://app$last.exact.test/" || true
      exact=$(load "app$last.exact.test")
      wild=$(load "x.w$last.wild.test")
      t0=$(now)
      curl -s -o /dev/null -X POST --max-time "$START_TIMEOUT" "http://127.0.0.1:$ADMIN_PORT/reload" || true
      reload=$(printf '%.2f' "$(echo "$(now) - $t0" | bc)")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "${NAMES[$i]}" "$check" "$STARTED" "$reload" "$exact" "$wild" \
        "$(mib "$(kb "$PROXY_PID" VmRSS)")" "$(mib "$(kb "$PROXY_PID" VmHWM)")"
      stop
    done
  done
done

# The audit trail: AUDIT_MB MiB of valid chained records, unless the disk would keep < 20 GB.
free_mb=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
want=${AUDIT_MB:-1024}
if (( want == 0 )); then exit 0; fi
size=$(( want < free_mb - 20480 ? want : free_mb - 20480 ))
if (( size <= 0 )); then echo "# audit trail: skipped, less than 20 GB free"; exit 0; fi
(( size < want )) && echo "# audit trail: $size MiB, not $want: the disk must keep 20 GB free"
trail="$W/trail.jsonl"
python3 - "$trail" "$size" <<'PY'
import hashlib, json, sys
path, size = sys.argv[1], int(sys.argv[2]) << 20
h = lambda b: b * 32
rec = {"time": "2026-01-01T00:00:00Z", "host": "app1.exact.test", "port": 443, "tee": "SGX",
       "verdict": "accepted", "code": None, "reasons": [], "cert_sha256": h("0a"),
       "quote_sha256": h("0b"), "policy_sha256": h("0c"), "generation": 1,
       "tcb": {"status": "UpToDate", "advisory_ids": [], "fmspc": "00606a000000",
               "tcb_evaluation_data_number": 17},
       "collateral": {"tcb_info_sha256": h("01"), "qe_identity_sha256": h("02"),
                      "pck_crl_sha256": h("03"), "root_ca_crl_sha256": h("04")},
       "mrenclave": h("e1"), "mrsigner": h("51"), "isv_prod_id": 1, "isv_svn": 2}
prev, seq, written = "0" * 64, 0, 0
with open(path, "wb", buffering=1 << 20) as f:
    while written < size:
        seq += 1
        rec["seq"], rec["prev_sha256"] = seq, prev
        line = json.dumps(rec, separators=(",", ":")).encode()
        prev = hashlib.sha256(line).hexdigest()
        f.write(line + b"\n")
        written += len(line) + 1
print(f"# audit trail: {written >> 20} MiB, {seq} records", file=sys.stderr)
PY
printf 'trail\tbinary\tstart_s\thwm_MiB\thwm_after_reopen_MiB\n'
empty="$W/empty.jsonl"
for _ in $(seq "$ROUNDS"); do
  for t in empty big; do
    path=$empty; [ "$t" = big ] && path=$trail
    cfg=$(config 1 "$path")
    for i in "${!BINS[@]}"; do
      rm -f "$empty"
      start "${BINS[$i]}" "$cfg" || { printf '%s\t%s\t%s\t-\t-\n' "$t" "${NAMES[$i]}" "$STARTED"; stop; continue; }
      hwm=$(mib "$(kb "$PROXY_PID" VmHWM)")
      kill -USR1 "$PROXY_PID"; sleep 1
      printf '%s\t%s\t%s\t%s\t%s\n' "$t" "${NAMES[$i]}" "$STARTED" "$hwm" "$(mib "$(kb "$PROXY_PID" VmHWM)")"
      stop
    done
  done
done
for i in "${!BINS[@]}"; do
  /usr/bin/time -f "# audit verify (${NAMES[$i]}): %e s, max RSS %M KiB" "${BINS[$i]}" audit verify "$trail" 2>&1 >/dev/null | grep -v '^$' || true
done
