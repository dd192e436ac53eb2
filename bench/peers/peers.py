"""The Python peers on the same per-task work as multiproc's `pool.*` rows: trivial tasks,
submit+collect, one-at-a-time round trip, map with chunk size 1, map with automatic chunks;
at 1 and 2 workers. Prints one `peer name workers value` line per measurement (µs, median
of 5). Run by bench/peers/run.sh inside its virtual environment."""
import multiprocessing as mp
import statistics
import sys
import time

REPEAT = 5


def ident(x):
    return x


def med(f):
    return statistics.median(f() for _ in range(REPEAT))


def per(n, f):
    def run():
        t = time.perf_counter()
        f()
        return (time.perf_counter() - t) / n * 1e6
    return med(run)


def measure(peer, w, submit, get, map1, mapauto, n):
    rt = n // 5
    big = n * 20
    out = {}
    if submit:
        out["submit_collect"] = per(n, lambda: [get(f) for f in [submit(i) for i in range(n)]])
        out["roundtrip"] = per(rt, lambda: [get(submit(i)) for i in range(rt)])
    if map1:
        out["map_chunk1"] = per(n, lambda: map1(range(n)))
    if mapauto:
        out["map_auto"] = per(big, lambda: mapauto(range(big)))
    for k, v in out.items():
        print(f"{peer} {k} {w} {v}", flush=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    ctx = mp.get_context("fork")
    for w in (1, 2):
        with ctx.Pool(w) as p:
            p.map(ident, range(100))
            measure("mp.Pool", w, lambda i: p.apply_async(ident, (i,)), lambda f: f.get(),
                    lambda it: p.map(ident, it, chunksize=1), lambda it: p.map(ident, it), n)
    import loky
    for w in (1, 2):
        ex = loky.get_reusable_executor(max_workers=w)
        list(ex.map(ident, range(100)))
        measure("loky", w, lambda i: ex.submit(ident, i), lambda f: f.result(),
                lambda it: list(ex.map(ident, it, chunksize=1)), None, n)
        ex.shutdown()
    import pebble
    for w in (1, 2):
        with pebble.ProcessPool(max_workers=w) as pp:
            pp.map(ident, range(100)).result()
            measure("pebble", w, lambda i: pp.schedule(ident, args=[i]), lambda f: f.result(),
                    lambda it: list(pp.map(ident, it, chunksize=1).result()), None, n)
    import mpire
    for w in (1, 2):
        # One pool for apply_async and another for map: a map on a pool that served
        # apply_async calls the function with the wrong arguments (mpire 2.x).
        with mpire.WorkerPool(n_jobs=w) as mw:
            mw.apply_async(ident, (1,)).get()
            measure("mpire", w, lambda i: mw.apply_async(ident, (i,)), lambda f: f.get(),
                    None, None, n)
        with mpire.WorkerPool(n_jobs=w) as mw:
            mw.map(ident, range(100))
            measure("mpire", w, None, None, lambda it: mw.map(ident, it, chunk_size=1),
                    lambda it: mw.map(ident, it), n)


if __name__ == "__main__":
    main()
