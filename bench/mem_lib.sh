# Memory samples for bench/mem.sh and bench/load.sh (sourced after common.sh, once
# start_proxy has set PROXY_PID): the proxy's RSS and jemalloc's own figures from /metrics.
MEM_SAMPLES="$W/samples.tsv"

# sample STAGE: one line of the proxy's RSS (KiB), jemalloc's allocated, active and resident
# bytes ("-" without jemalloc) and its open client and upstream connections.
sample() {
  local m; m="$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)"
  val() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print "-" }' <<< "$m"; }
  echo -e "$1\t$(rss_kb "$PROXY_PID")\t$(val ratls_allocator_allocated_bytes)\t$(val ratls_allocator_active_bytes)\t$(val ratls_allocator_resident_bytes)\t$(val ratls_client_connections)\t$(val ratls_upstream_connections)" >> "$MEM_SAMPLES"
}

# quiet STAGE: three samples 1 s apart, after 2 s without traffic.
quiet() { sleep 2; for _ in 1 2 3; do sample "$1"; sleep 1; done; }

# sample_while PID STAGE: a sample every 0.5 s while PID runs.
sample_while() { while kill -0 "$1" 2>/dev/null; do sample "$2"; sleep 0.5; done; }

# mem_report CONNS INFLIGHT HWM_KIB: the table of medians by stage, the figures per held
# connection and per request in flight (when those stages ran), and the load's median and p90.
mem_report() {
  python3 - "$MEM_SAMPLES" "$1" "$2" "$3" <<'PY'
import statistics, sys
path, conns, inflight, hwm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = {}; order = []
for line in open(path):
    stage, *v = line.rstrip("\n").split("\t")
    num = lambda x: None if x == "-" else float(x)
    rss, alloc, active, res, cl, up = (num(x) for x in v)
    if stage not in rows: order.append(stage)
    rows.setdefault(stage, []).append(dict(rss=rss * 1024, alloc=alloc, active=active, res=res, cl=cl, up=up))
MiB = 1024 * 1024
def med(stage, k):
    xs = [r[k] for r in rows.get(stage, []) if r[k] is not None]
    return statistics.median(xs) if xs else None
def f(x, unit=MiB, d=1): return "-" if x is None else f"{x / unit:.{d}f}"
print(f"{'stage':<12}{'RSS':>8}{'allocated':>11}{'active':>8}{'resident':>10}{'kept':>7}{'clients':>9}{'upstreams':>10}   (MiB; medians)")
for st in order:
    if st == "load": continue
    a, r = med(st, "alloc"), med(st, "res")
    kept = None if a is None or r is None else r - a
    print(f"{st:<12}{f(med(st,'rss')):>8}{f(a):>11}{f(med(st,'active')):>8}{f(r):>10}{f(kept):>7}{f(med(st,'cl'),1,0):>9}{f(med(st,'up'),1,0):>10}")
def per(a, b, n, k):
    x, y = med(a, k), med(b, k)
    return "-" if x is None or y is None else f"{(y - x) / n / 1024:.1f}"
if "held" in rows:
    print(f"per held connection (held - start) / {conns}: RSS {per('start','held',conns,'rss')} KiB, allocated {per('start','held',conns,'alloc')} KiB, resident {per('start','held',conns,'res')} KiB")
if "inflight" in rows:
    print(f"per request in flight (inflight - held) / {inflight}: RSS {per('held','inflight',inflight,'rss')} KiB, allocated {per('held','inflight',inflight,'alloc')} KiB, resident {per('held','inflight',inflight,'res')} KiB")
load = rows.get("load", [])
# The steady part of the load: every client connected (the first samples are the ramp).
steady = [r for r in load if r["cl"] is not None and r["cl"] >= 0.95 * conns] or load
def q(xs, p):
    xs = sorted(x for x in xs if x is not None)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None
col = lambda k: [r[k] for r in steady]
kept = [r["res"] - r["alloc"] for r in steady if r["res"] is not None and r["alloc"] is not None]
print(f"load ({len(steady)} of {len(load)} samples with >= 95% of clients connected), median / p90 MiB: "
      f"RSS {f(q(col('rss'), 0.5))} / {f(q(col('rss'), 0.9))}, allocated {f(q(col('alloc'), 0.5))} / {f(q(col('alloc'), 0.9))}, "
      f"resident {f(q(col('res'), 0.5))} / {f(q(col('res'), 0.9))}, kept {f(q(kept, 0.5))} / {f(q(kept, 0.9))}; "
      f"upstreams {f(q(col('up'), 0.5), 1, 0)} / {f(q(col('up'), 0.9), 1, 0)}; peak RSS (VmHWM) {hwm / 1024:.1f}")
PY
  echo "raw samples: $MEM_SAMPLES"
}
