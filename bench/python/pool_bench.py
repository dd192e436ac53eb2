"""Python's side of `multiproc bench pool`: the same work on multiprocessing.Pool,
ProcessPoolExecutor and ThreadPoolExecutor. Prints one JSON object of medians."""
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def ident(x):
    return x


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def median_of(reps, f):
    return statistics.median(f() for _ in range(reps))


def submit_collect(n, submit, get):
    t = time.perf_counter()
    futs = [submit(i) for i in range(n)]
    for f in futs:
        get(f)
    return (time.perf_counter() - t) / n * 1e6


def main():
    quick = "--quick" in sys.argv
    n = 20_000 if quick else 100_000
    reps = 3 if quick else 5
    out = {}
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(ident, range(100))
        out["pool_apply_async_us"] = median_of(reps, lambda: submit_collect(n, lambda i: pool.apply_async(ident, (i,)), lambda f: f.get()))
        rt = 2000 if quick else 10_000

        def roundtrip():
            t = time.perf_counter()
            for i in range(rt):
                pool.apply_async(ident, (i,)).get()
            return (time.perf_counter() - t) / rt * 1e6

        out["pool_roundtrip_us"] = median_of(reps, roundtrip)

        def map1():
            t = time.perf_counter()
            pool.map(ident, range(n), chunksize=1)
            return (time.perf_counter() - t) / n * 1e6

        out["pool_map_chunk1_us"] = median_of(reps, map1)
        big = n * 10

        def mapauto():
            t = time.perf_counter()
            pool.map(ident, range(big))
            return (time.perf_counter() - t) / big * 1e6

        out["pool_map_auto_us"] = median_of(reps, mapauto)
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(ident, range(100)))
        m = n // 5
        out["ppe_submit_us"] = median_of(reps, lambda: submit_collect(m, lambda i: ex.submit(ident, i), lambda f: f.result()))
    with ThreadPoolExecutor(2) as ex:
        out["tpe_submit_us"] = median_of(reps, lambda: submit_collect(n, lambda i: ex.submit(ident, i), lambda f: f.result()))
    for method in ["fork", "spawn", "forkserver"]:
        def startup():
            t = time.perf_counter()
            with mp.get_context(method).Pool(2) as p:
                p.apply_async(ident, (1,)).get()
                ms = (time.perf_counter() - t) * 1e3
            return ms

        out[f"pool_startup_{method}_ms"] = median_of(3, startup)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
