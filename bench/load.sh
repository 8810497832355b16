#!/usr/bin/env bash
# Load test: CONNS concurrent client connections (default 1000) through intercept mode to a
# sim enclave for DUR (default 60s). Reports failed requests, and the proxy's open file
# descriptors and RSS before, during and after: during, the median and p90 of RSS and of
# jemalloc's figures sampled every 0.5 s (bench/mem_lib.sh) besides the peak, which moves with
# how many requests happen to be mid-flight (bench/mem.sh separates those). Loopback only,
# bounded in time.
#   bench/load.sh
# Pooled upstream connections close after the idle timeout: 10 s here, so "after" can show it.
IDLE_TIMEOUT="${IDLE_TIMEOUT:-10}"
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/mem_lib.sh"
DUR="${DUR:-60s}"; CONNS="${CONNS:-1000}"
start_sim
start_proxy
# One request first so the CA and the verdict exist; then measure the idle baseline.
curl -s -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/warm
sleep 1
echo "before: fds $(fds "$PROXY_PID"), RSS $(( $(rss_kb "$PROXY_PID") / 1024 )) MiB"
sample start
oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$CONNS" -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/ > "$W/load.json" &
OHA=$!
peak_fd=0
while kill -0 "$OHA" 2>/dev/null; do
  f=$(fds "$PROXY_PID")
  (( f > peak_fd )) && peak_fd=$f
  sample load
  sleep 0.5
done
wait "$OHA" || true
HWM=$(hwm_kb "$PROXY_PID")
echo "during: peak fds $peak_fd (sampled every 0.5 s), peak RSS $(( HWM / 1024 )) MiB (VmHWM, the kernel's high-water mark)"
sleep 5
echo "after (5 s idle): fds $(fds "$PROXY_PID"), RSS $(( $(rss_kb "$PROXY_PID") / 1024 )) MiB"
sample after_5s
sleep $(( IDLE_TIMEOUT + 5 ))
echo "after the idle timeout ($(( IDLE_TIMEOUT + 10 )) s idle): fds $(fds "$PROXY_PID"), RSS $(( $(rss_kb "$PROXY_PID") / 1024 )) MiB"
sample after_idle
mem_report "$CONNS" 0 "$HWM"
echo -e "scenario\treq/s\tp50_ms\tp99_ms\tstatus\terrors"
summarise "load_${CONNS}c" "$W/load.json"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^ratls_(verifications_total|client_connections|upstream_connections) '
echo "raw results: $W"
