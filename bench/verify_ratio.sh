#!/usr/bin/env bash
# Time, not instructions: a cold full DCAP verification of ours against dcap-qvl 0.7.1 on
# every fixture, in alternating blocks in one process (`examples/verify_callgrind.rs ratio`),
# so both sides see the same load. Measures only. Usage: NO_BUILD=1 bench/verify_ratio.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export RATLS_FIXTURES="${RATLS_FIXTURES:-../shared/fixtures}"
[ -n "${NO_BUILD:-}" ] || cargo build --release --example verify_callgrind >&2
bin="${VERIFY_BIN:-target/release/examples/verify_callgrind}"
for f in sgx_v3_qvl sgx_v3_automata sgx_v3_debug_dcaprs sgx_v3_debug_mobilecoin tdx_v4_qvl \
  tdx_v4_padded_automata tdx_v5_td15ex_qvl; do
  "$bin" ratio "$f" "${1:-60}"
done
