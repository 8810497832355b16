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
CONNS="${CONNS:-1000}"; INFLIGHT="${INFLIGHT:-200}"; DUR="${DUR:-30s}"; SLOW_MS="${SLOW_MS:-10000}"
start_sim
start_proxy
S="$W/samples.tsv"

# sample STAGE: one line of the proxy's RSS (KiB), jemalloc's allocated, active and resident
# bytes ("-" without jemalloc) and its open client and upstream connections.
sample() {
  local m; m="$(curl -s --max-time 5 http://127.0.0.1:19129/metrics || true)"
  val() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print "-" }' <<< "$m"; }
  echo -e "$1\t$(rss_kb "$PROXY_PID")\t$(val ratls_allocator_allocated_bytes)\t$(val ratls_allocator_active_bytes)\t$(val ratls_allocator_resident_bytes)\t$(val ratls_client_connections)\t$(val ratls_upstream_connections)" >> "$S"
}
# quiet STAGE: three samples 1 s apart, after 2 s without traffic.
quiet() { sleep 2; for _ in 1 2 3; do sample "$1"; sleep 1; done; }

curl -s -o /dev/null -x http://127.0.0.1:19128 --cacert "$CA" https://bench.enclave.test/warm
quiet start

coproc HOLD { python3 "$ROOT/bench/mem_hold.py" 19128 "$CA"; }
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

oha --no-tui --no-pre-lookup --ipv4 --output-format json -z "$DUR" -c "$CONNS" -x http://127.0.0.1:19128 --cacert "$CA" https://bench.enclave.test/ > "$W/load.json" &
OHA=$!
while kill -0 "$OHA" 2>/dev/null; do sample load; sleep 0.5; done
wait "$OHA" || true
HWM=$(hwm_kb "$PROXY_PID")
sleep 5; sample after
echo -e "scenario\treq/s\tp50_ms\tp99_ms\tstatus\terrors"
summarise "load_${CONNS}c" "$W/load.json"

python3 - "$S" "$CONNS" "$INFLIGHT" "$HWM" <<'PY'
import statistics, sys
path, conns, inflight, hwm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = {}
for line in open(path):
    stage, *v = line.rstrip("\n").split("\t")
    num = lambda x: None if x == "-" else float(x)
    rss, alloc, active, res, cl, up = (num(x) for x in v)
    rows.setdefault(stage, []).append(dict(rss=rss * 1024, alloc=alloc, active=active, res=res, cl=cl, up=up))
MiB = 1024 * 1024
def med(stage, k):
    xs = [r[k] for r in rows.get(stage, []) if r[k] is not None]
    return statistics.median(xs) if xs else None
def f(x, unit=MiB, d=1): return "-" if x is None else f"{x / unit:.{d}f}"
print(f"{'stage':<12}{'RSS':>8}{'allocated':>11}{'active':>8}{'resident':>10}{'kept':>7}{'clients':>9}{'upstreams':>10}   (MiB; medians)")
for st in ["start", "held", "inflight", "held_again", "closed", "after"]:
    a, r = med(st, "alloc"), med(st, "res")
    kept = None if a is None or r is None else r - a
    print(f"{st:<12}{f(med(st,'rss')):>8}{f(a):>11}{f(med(st,'active')):>8}{f(r):>10}{f(kept):>7}{f(med(st,'cl'),1,0):>9}{f(med(st,'up'),1,0):>10}")
def per(a, b, n, k):
    x, y = med(a, k), med(b, k)
    return "-" if x is None or y is None else f"{(y - x) / n / 1024:.1f}"
print(f"per held connection (held - start) / {conns}: RSS {per('start','held',conns,'rss')} KiB, allocated {per('start','held',conns,'alloc')} KiB, resident {per('start','held',conns,'res')} KiB")
print(f"per request in flight (inflight - held) / {inflight}: RSS {per('held','inflight',inflight,'rss')} KiB, allocated {per('held','inflight',inflight,'alloc')} KiB, resident {per('held','inflight',inflight,'res')} KiB")
load = rows.get("load", [])
# The steady part of the load: every client connected (the first samples are the ramp).
steady = [r for r in load if r["cl"] is not None and r["cl"] >= 0.95 * conns] or load
def q(k, p):
    xs = sorted(r[k] for r in steady if r[k] is not None)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None
kept = [r["res"] - r["alloc"] for r in steady if r["res"] is not None and r["alloc"] is not None]
kq = lambda p: sorted(kept)[min(len(kept) - 1, int(p * len(kept)))] if kept else None
print(f"load ({len(steady)} of {len(load)} samples with >= 95% of clients connected), median / p90 MiB: "
      f"RSS {f(statistics.median([r['rss'] for r in steady]))} / {f(q('rss', 0.9))}, "
      f"allocated {f(q('alloc', 0.5))} / {f(q('alloc', 0.9))}, resident {f(q('res', 0.5))} / {f(q('res', 0.9))}, "
      f"kept {f(kq(0.5))} / {f(kq(0.9))}; upstreams {f(q('up', 0.5), 1, 0)} / {f(q('up', 0.9), 1, 0)}; peak RSS (VmHWM) {hwm / 1024:.1f}")
PY
echo "raw samples: $S"
