#!/usr/bin/env bash
# Instructions per full DCAP verification (collateral + quote), ours cold, ours on a warm
# anchor, and dcap-qvl 0.7.1, on every fixture: callgrind counts, the same whatever the load.
# Per verification = (instructions at N=11 - at N=1) / 10, so reading the fixture and the
# binary's start are not counted; `ours` minus `anchors` (making the N anchors it uses).
# Measures only. Usage: NO_BUILD=1 bench/verify_callgrind.sh [FIXTURE...]
set -euo pipefail
cd "$(dirname "$0")/.."
export RATLS_FIXTURES="${RATLS_FIXTURES:-../shared/fixtures}"
[ -n "${NO_BUILD:-}" ] || cargo build --release --example verify_callgrind >&2
bin="${VERIFY_BIN:-target/release/examples/verify_callgrind}"
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || fixtures=(sgx_v3_qvl sgx_v3_automata sgx_v3_debug_dcaprs
  sgx_v3_debug_mobilecoin tdx_v4_qvl tdx_v4_padded_automata tdx_v5_td15ex_qvl)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # side fixture n -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2.$3" "$bin" "$1" "$2" "$3" \
    >/dev/null 2>&1
  awk '/^totals:/ {print $2}' "$out/$1.$2.$3"
}
per() { echo $(( ($(count "$1" "$2" 11) - $(count "$1" "$2" 1)) / 10 )); }
printf '| fixture | ours cold | ours refresh | dcap-qvl | cold / dcap-qvl | refresh / dcap-qvl |\n'
printf '|---|---|---|---|---|---|\n'
for f in "${fixtures[@]}"; do
  ours=$(per ours "$f"); anchors=$(per anchors "$f"); refresh=$(per ours-refresh "$f")
  qvl=$(per qvl "$f")
  cold=$((ours - anchors))
  awk -v f="$f" -v c="$cold" -v r="$refresh" -v q="$qvl" 'BEGIN {
    printf "| `%s` | %d | %d | %d | %.3f× | %.3f× |\n", f, c, r, q, c / q, r / q }'
done
