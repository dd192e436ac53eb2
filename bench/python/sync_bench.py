"""Python equivalents of benches/sync.rs, for side-by-side numbers.

    python3 bench/python/sync_bench.py [--quick]

Prints the median of several runs for each case, in the units criterion uses.
"""
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing import shared_memory

QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 7


def median_time(f, runs=RUNS):
    return statistics.median(f() for _ in range(runs))


def uncontended_lock():
    lock = mp.Lock()
    n = 200_000 if QUICK else 1_000_000

    def run():
        acq, rel = lock.acquire, lock.release
        t = time.perf_counter()
        for _ in range(n):
            acq()
            rel()
        return (time.perf_counter() - t) / n

    return median_time(run)


def count(value, n, go):
    go.wait()
    lock = value.get_lock()
    for _ in range(n):
        with lock:
            value.value += 1


def two_process_counter():
    n = 200_000 if QUICK else 1_000_000

    def run():
        value = mp.Value("Q", 0)
        go = mp.Event()
        ps = [mp.Process(target=count, args=(value, n, go)) for _ in range(2)]
        for p in ps:
            p.start()
        time.sleep(0.2)
        t = time.perf_counter()
        go.set()
        for p in ps:
            p.join()
        dt = time.perf_counter() - t
        assert value.value == 2 * n
        return 2 * n / dt

    return statistics.median(run() for _ in range(3))


def shm_lifecycle():
    n = 5_000 if QUICK else 20_000

    def run():
        t = time.perf_counter()
        for _ in range(n):
            a = shared_memory.SharedMemory(create=True, size=4096)
            b = shared_memory.SharedMemory(name=a.name)
            b.close()
            a.close()
            a.unlink()
        return (time.perf_counter() - t) / n

    return median_time(run)


BIG = 256 << 20


def copy_in(name, go, done, iters):
    # Forked child: it shares the parent's resource tracker, which the parent's unlink()
    # settles; no gh-82300 workaround needed here.
    shm = shared_memory.SharedMemory(name=name)
    src = bytes([7]) * BIG
    for _ in range(iters):
        go.acquire()
        shm.buf[:BIG] = src
        done.release()
    del src
    shm.close()


def big_copy():
    src = bytearray(b"\x01") * BIG
    dst = bytearray(BIG)

    def memcpy():
        t = time.perf_counter()
        dst[:] = src
        return time.perf_counter() - t

    local = median_time(memcpy, 5)
    del src, dst
    shm = shared_memory.SharedMemory(create=True, size=BIG)
    shm.buf[:BIG] = bytes(BIG)  # fault in
    go, done = mp.Semaphore(0), mp.Semaphore(0)
    iters = 5
    p = mp.Process(target=copy_in, args=(shm.name, go, done, iters))
    p.start()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        go.release()
        done.acquire()
        times.append(time.perf_counter() - t)
        assert shm.buf[BIG - 1] == 7
    p.join()
    shm.close()
    shm.unlink()
    return local, statistics.median(times)


if __name__ == "__main__":
    mp.set_start_method("fork")
    print(f"python {sys.version.split()[0]}")
    print(f"uncontended Lock acquire+release: {uncontended_lock() * 1e9:.1f} ns")
    print(f"two processes, Value + its lock:  {two_process_counter() / 1e6:.2f} M increments/s")
    print(f"SharedMemory 4 KiB create+open+unlink: {shm_lifecycle() * 1e6:.1f} us")
    local, shared = big_copy()
    print(f"256 MiB memcpy (bytearray copy): {local * 1e3:.1f} ms")
    print(f"256 MiB to another process via SharedMemory: {shared * 1e3:.1f} ms "
          f"({shared / local:.2f}x memcpy)")
