#!/usr/bin/env bash
# Memory at 1,000 connections, measured so that it does not move with scheduling (issue 30).
# The peak RSS under load (bench/load.sh) depends on how many requests happen to be mid-flight
# at once; this separates what a connection costs from what a request in flight costs:
#   held      CONNS intercepted connections open through the proxy, each with its verdict and
#             one request answered, idle: RSS and jemalloc's figures once quiet;
#   in flight INFLIGHT of them each with a request the enclave holds for SLOW_MS ms
#             (`GET /slow`): what a request mid-flight adds (its upstream connection included);
#   load      oha with CONNS connections for DUR, RSS and jemalloc's figures sampled every 0.5 s:
#             median and p90, not only the peak;
#   after     5 s after the load.
# "kept" is resident − allocated: pages the allocator holds that are not live.
#   bench/mem.sh                 # CONNS=1000 INFLIGHT=200 DUR=30s; PROXY_BIN=... another build
IDLE_TIMEOUT="${IDLE_TIMEOUT:-300}"  # held connections must outlive the measurement
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/mem_lib.sh"
CONNS="${CONNS:-1000}"; INFLIGHT="${INFLIGHT:-200}"; DUR="${DUR:-30s}"; SLOW_MS="${SLOW_MS:-10000}"
start_sim
start_proxy
curl -s -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/warm
quiet start

coproc HOLD { python3 "$ROOT/bench/mem_hold.py" "$PROXY_PORT" "$CA"; }
PIDS+=("$HOLD_PID")
ask() { echo "$1" >&"${HOLD[1]}"; local reply; read -r reply <&"${HOLD[0]}"; echo "client: $1 -> $reply"; }
ask "hold $CONNS"
quiet held
ask "inflight $INFLIGHT $SLOW_MS"
# Sampled while the enclave still holds every answer (SLOW_MS is 10 s at most).
sleep 3; for _ in 1 2 3; do sample inflight; sleep 0.5; done
ask finish
quiet held_again
ask close
quiet closed

oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$CONNS" -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" https://bench.enclave.test/ > "$W/load.json" &
OHA=$!
sample_while "$OHA" load
wait "$OHA" || true
HWM=$(hwm_kb "$PROXY_PID")
sleep 5; sample after
echo -e "scenario\treq/s\tp50_ms\tp99_ms\tstatus\terrors"
summarise "load_${CONNS}c" "$W/load.json"

mem_report "$CONNS" "$INFLIGHT" "$HWM"
