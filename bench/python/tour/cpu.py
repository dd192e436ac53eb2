"""Tour experiment 3: CPU-bound. The same recursive Fibonacci five times: serially, on
5 threads and on 5 processes. The GIL lets one thread run Python code at a time, so threads
give no speed-up; processes do. Usage: cpu.py N."""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


if __name__ == "__main__":
    n = int(sys.argv[1])
    tasks = [n] * 5
    t = time.perf_counter()
    serial = [fib(x) for x in tasks]
    serial_s = time.perf_counter() - t
    with ThreadPoolExecutor(max_workers=5) as ex:
        t = time.perf_counter()
        threads = list(ex.map(fib, tasks))
        threads_s = time.perf_counter() - t
    with Pool(5) as pool:
        t = time.perf_counter()
        procs = pool.map(fib, tasks)
        procs_s = time.perf_counter() - t
    assert serial == threads == procs
    print(json.dumps({"n": n, "tasks": 5, "result": serial[0], "serial_s": serial_s,
                      "threads_s": threads_s, "processes_s": procs_s}))
