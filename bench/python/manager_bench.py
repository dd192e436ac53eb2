"""Python's side of `multiproc bench --only manager`: the same work on
multiprocessing's SyncManager. Prints one JSON object of medians.

  --pin    run the client and the manager server on CPU 0 only
  --quick  fewer repetitions
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing.managers import SyncManager


def dict_op_us(d, n):
    """µs per operation, alternating d[k] = v and d[k]."""
    t = time.perf_counter()
    for i in range(n // 2):
        d[i & 63] = i
        d[i & 63]
    return (time.perf_counter() - t) / n * 1e6


def appender(lst, n, times):
    len(lst)  # connect before the clock starts
    t = time.perf_counter()
    for i in range(n):
        lst.append(i)
    times.append(time.perf_counter() - t)


def list_append_rate(m, n):
    """Appends per second by two processes appending to one list."""
    lst = m.list()
    times = m.list()
    ps = [mp.Process(target=appender, args=(lst, n, times)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    assert len(lst) == 2 * n
    return 2 * n / max(times)


def main():
    quick = "--quick" in sys.argv
    if "--pin" in sys.argv:
        os.sched_setaffinity(0, {0})  # the server process forks from us and inherits it
    reps = 3 if quick else 5
    n = 4000 if quick else 20000
    out = {}
    with SyncManager() as m:
        d = m.dict()
        dict_op_us(d, 1000)
        out["dict_op_us"] = statistics.median(dict_op_us(d, n) for _ in range(reps))
        out["list_append_per_s"] = statistics.median(
            list_append_rate(m, n // 2) for _ in range(reps))
    print(json.dumps(out))


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
