"""multiprocessing.Process start to the first line of the child's function (fork, spawn,
forkserver), measured with the monotonic clock shared by both processes.

The Python side of `cargo bench --bench ipc -- process_start`. Prints medians.
Usage: python3 bench/python/ipc_process.py
"""
import multiprocessing as mp
import statistics
import time


def first_line(conn):
    conn.send(time.monotonic_ns())


def measure(method, n):
    ctx = mp.get_context(method)
    out = []
    for _ in range(n):
        a, b = ctx.Pipe()
        t0 = time.monotonic_ns()
        p = ctx.Process(target=first_line, args=(b,))
        p.start()
        t1 = a.recv()
        out.append((t1 - t0) / 1e6)
        p.join()
    return statistics.median(out)


def main():
    for method, n in [("fork", 30), ("forkserver", 30), ("spawn", 10)]:
        print(f"python Process start to first line ({method}): {measure(method, n):.2f} ms (median)")


if __name__ == "__main__":
    main()
