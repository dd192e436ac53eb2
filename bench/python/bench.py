"""Python's side of `multiproc bench`: the same work, the same N and the same start-up
state as the Rust side, for each measurement it is given.

    python3 bench/python/bench.py --repeat=5 pool.submit_collect_per_task=50000 ...

Prints `name value` per line (the median of --repeat runs), in the Rust side's units.
Every timed region starts where the Rust side's does: workers and producers are started
and waiting before the clock starts, and cold starts run in a fresh interpreter.
"""
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import shared_memory

REPEAT = 5


def median(f):
    return statistics.median(f() for _ in range(REPEAT))


def ident(x):
    return x


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def pin(cpu):
    os.sched_setaffinity(0, {cpu} if cpu is not None else range(os.cpu_count()))


_pools = {}


def pool():
    """One warm 2-worker Pool (fork), shared by the pool rows as the Rust side shares one."""
    if "p" not in _pools:
        p = mp.get_context("fork").Pool(2)
        p.map(ident, range(1000))
        _pools["p"] = p
    return _pools["p"]


def drop_pool():
    """Forking while the shared Pool's threads run can deadlock the child (a lock held by
    a thread that the child does not have): jobs that fork close it first."""
    for p in _pools.values():
        p.terminate()
        p.join()
    _pools.clear()


POOL_JOBS = set()


def submit_collect(n):
    p = pool()
    def run():
        t = time.perf_counter()
        futs = [p.apply_async(ident, (i,)) for i in range(n)]
        for f in futs:
            f.get()
        return (time.perf_counter() - t) / n * 1e6
    return median(run)


def map_chunk1(n):
    p = pool()
    def run():
        t = time.perf_counter()
        p.map(ident, range(n), chunksize=1)
        return (time.perf_counter() - t) / n * 1e6
    return median(run)


def map_auto(n):
    p = pool()
    def run():
        t = time.perf_counter()
        p.map(ident, range(n))
        return (time.perf_counter() - t) / n * 1e6
    return median(run)


def roundtrip_on(p, n):
    def run():
        t = time.perf_counter()
        for i in range(n):
            p.apply_async(ident, (i,)).get()
        return (time.perf_counter() - t) / n * 1e6
    return median(run)


def roundtrip_unpinned(n):
    return roundtrip_on(pool(), n)


def roundtrip_pinned(n):
    pin(0)
    try:
        with mp.get_context("fork").Pool(2) as p:
            p.map(ident, range(1000))
            return roundtrip_on(p, n)
    finally:
        pin(None)


COLD = """
import multiprocessing as mp, time
def ident(x): return x
if __name__ == "__main__":
    t = time.perf_counter()
    with mp.get_context("forkserver").Pool(2) as p:
        p.apply_async(ident, (1,)).get()
        print((time.perf_counter() - t) * 1e3)
"""


def start_first_result(_):
    # A fresh interpreter each time: the forkserver is started inside the timing, as the
    # Rust side's fork server is.
    # The script is a file: the forkserver's children must import its `ident`.
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(COLD)
    try:
        def run():
            out = subprocess.run([sys.executable, f.name], capture_output=True, text=True,
                                 check=True, timeout=60)
            return float(out.stdout.strip())
        return median(run)
    finally:
        os.unlink(f.name)


def threadpool_submit(n):
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(ident, range(1000)))
        def run():
            t = time.perf_counter()
            futs = [ex.submit(ident, i) for i in range(n)]
            for f in futs:
                f.result()
            return (time.perf_counter() - t) / n * 1e6
        return median(run)


def first_line(c):
    c.send_bytes(b"1")


def process_start(k):
    ctx = mp.get_context("forkserver")
    # Warm: the forkserver runs before the clock starts, as the Rust side's does.
    a, b = ctx.Pipe()
    p = ctx.Process(target=first_line, args=(b,))
    p.start(); a.recv_bytes(); p.join()
    def run():
        t = time.perf_counter()
        for _ in range(k):
            a, b = ctx.Pipe()
            p = ctx.Process(target=first_line, args=(b,))
            p.start()
            a.recv_bytes()
            p.join()
        return (time.perf_counter() - t) * 1e3 / k
    return median(run)


def producer(q, size, n, go):
    msg = bytes(size)
    go.recv_bytes()
    for _ in range(n):
        q.put(msg)


def queue_run(size, n):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    a, b = ctx.Pipe()
    p = ctx.Process(target=producer, args=(q, size, n, b))
    p.start()
    time.sleep(0.05)  # the producer is started and waiting, as on the Rust side
    t = time.perf_counter()
    a.send_bytes(b"go")
    for _ in range(n):
        q.get()
    secs = time.perf_counter() - t
    p.join()
    return secs


def queue_64(n):
    return median(lambda: n / queue_run(64, n))


def queue_1mib(n):
    return median(lambda: n * (1 << 20) / 1e9 / queue_run(1 << 20, n))


def echo(c, cpu):
    pin(cpu)
    # An empty message stops it: the forked child holds the parent's end too, so it would
    # never see EOF.
    while True:
        m = c.recv_bytes()
        if not m:
            return
        c.send_bytes(m)


def pipe_run(n, cpu):
    pin(cpu)
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b, cpu))
    p.start()
    b.close()
    msg = bytes(16)
    for _ in range(100):
        a.send_bytes(msg); a.recv_bytes()
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
        a.recv_bytes()
    us = (time.perf_counter() - t) / n * 1e6
    a.send_bytes(b"")
    p.join()
    pin(None)
    return us


def counter(lock, v, n, go):
    go.recv_bytes()
    for _ in range(n):
        with lock:
            v.value += 1


def lock_2proc(n):
    ctx = mp.get_context("fork")
    def run():
        # A plain Lock (not Value's default RLock) around a RawValue: what Rust's side does.
        lock, v = ctx.Lock(), ctx.RawValue("Q", 0)
        pipes = [ctx.Pipe() for _ in range(2)]
        ps = [ctx.Process(target=counter, args=(lock, v, n, b)) for _, b in pipes]
        for p in ps:
            p.start()
        time.sleep(0.02)
        t = time.perf_counter()
        for a, _ in pipes:
            a.send_bytes(b"go")
        for p in ps:
            p.join()
        secs = time.perf_counter() - t
        assert v.value == 2 * n
        return 2 * n / secs
    return median(run)


def lock_uncontended(n):
    lock = mp.Lock()
    def run():
        acq, rel = lock.acquire, lock.release
        t = time.perf_counter()
        for _ in range(n):
            acq()
            rel()
        return (time.perf_counter() - t) / n * 1e9
    return median(run)


def shm_cycle(n):
    def run():
        t = time.perf_counter()
        for _ in range(n):
            a = shared_memory.SharedMemory(create=True, size=4096)
            o = shared_memory.SharedMemory(name=a.name)
            o.close()
            a.close()
            a.unlink()
        return (time.perf_counter() - t) / n * 1e6
    return median(run)


def shm_copy(_):
    big = 256 << 20
    src = bytes([7]) * big
    shm = shared_memory.SharedMemory(create=True, size=big)
    shm.buf[:] = bytes(big)  # fault the pages in outside the timing
    def run():
        t = time.perf_counter()
        shm.buf[:] = src
        return big / (time.perf_counter() - t) / 1e9
    v = median(run)
    shm.close()
    shm.unlink()
    return v


def fib_speedup(n, parallel):
    inputs = [n] * 32
    def serial():
        t = time.perf_counter()
        sum(fib(x) for x in inputs)
        return time.perf_counter() - t
    def run():
        s = serial()
        t = time.perf_counter()
        parallel(inputs)
        p = time.perf_counter() - t
        return (s + serial()) / 2 / p
    return median(run)


def fib_processpool(n):
    return fib_speedup(n, lambda xs: pool().map(fib, xs, chunksize=1))


def fib_threadpool(n):
    with ThreadPoolExecutor(2) as ex:
        return fib_speedup(n, lambda xs: list(ex.map(fib, xs)))


POOL_JOBS.update({
    "pool.submit_collect_per_task", "pool.map_chunk1_per_task", "pool.map_auto_per_task",
    "pool.roundtrip_unpinned", "cpu.fib_speedup_processpool",
})

JOBS = {
    "pool.submit_collect_per_task": submit_collect,
    "pool.map_chunk1_per_task": map_chunk1,
    "pool.map_auto_per_task": map_auto,
    "pool.roundtrip": roundtrip_pinned,
    "pool.roundtrip_unpinned": roundtrip_unpinned,
    "pool.start_first_result": start_first_result,
    "threadpool.submit_collect_per_task": threadpool_submit,
    "process.start": process_start,
    "queue.msgs_64B": queue_64,
    "queue.bw_1MiB": queue_1mib,
    "pipe.roundtrip": lambda n: median(lambda: pipe_run(n, 0)),
    "pipe.roundtrip_unpinned": lambda n: median(lambda: pipe_run(n, None)),
    "lock.incr_2proc": lock_2proc,
    "lock.uncontended": lock_uncontended,
    "shm.create_open_unlink": shm_cycle,
    "shm.copy_256MiB": shm_copy,
    "cpu.fib_speedup_processpool": fib_processpool,
    "cpu.fib_speedup_threadpool": fib_threadpool,
}


def main():
    global REPEAT
    jobs = []
    for a in sys.argv[1:]:
        if a.startswith("--repeat="):
            REPEAT = int(a.split("=", 1)[1])
        else:
            name, n = a.split("=", 1)
            jobs.append((name, int(n)))
    for name, n in jobs:
        f = JOBS.get(name)
        if f is None:
            print(f"bench.py: no Python side for {name}", file=sys.stderr)
            continue
        if name not in POOL_JOBS:
            drop_pool()
        print(f"{name} {f(n)}", flush=True)
    drop_pool()


if __name__ == "__main__":
    main()
