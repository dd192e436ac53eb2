"""multiprocessing.Queue throughput, one producer process to one consumer process.

The Python side of `cargo bench --bench ipc -- queue`. Prints the median of 5 runs.
Usage: python3 bench/python/ipc_queue.py
"""
import multiprocessing as mp
import statistics
import time


def producer(q, n, size):
    msg = b"x" * size
    for _ in range(n):
        q.put(msg)


def run(n, size, method="fork"):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=producer, args=(q, n, size))
    t0 = time.perf_counter()
    p.start()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t0
    p.join()
    return dt


def main():
    for size, n in [(64, 200_000), (1 << 20, 500)]:
        runs = [run(n, size) for _ in range(5)]
        med = statistics.median(runs)
        if size < 1024:
            print(f"python mp.Queue {size}B: {n / med / 1e6:.3f} M msgs/s (median of 5)")
        else:
            print(f"python mp.Queue 1MiB: {n * size / med / 1e9:.3f} GB/s (median of 5)")


if __name__ == "__main__":
    main()
