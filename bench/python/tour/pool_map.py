"""Tour experiment 6: a Pool of 6 workers maps x**5 over 1..12, with a short sleep per
task, reporting which pid computed which value; then the same with one Process per value,
each sending its answer through a Queue. Usage: pool_map.py SECONDS."""
import json
import os
import sys
import time
from multiprocessing import Pool, Process, Queue


def power5(x, seconds):
    time.sleep(seconds)
    return x, x ** 5, os.getpid()


def power5_to_queue(x, seconds, queue):
    queue.put(power5(x, seconds))


if __name__ == "__main__":
    seconds = float(sys.argv[1])
    values = range(1, 13)
    with Pool(6) as pool:
        t = time.perf_counter()
        pooled = pool.starmap(power5, [(x, seconds) for x in values])
        pool_s = time.perf_counter() - t
    queue = Queue()
    t = time.perf_counter()
    ps = [Process(target=power5_to_queue, args=(x, seconds, queue)) for x in values]
    for p in ps:
        p.start()
    one_each = sorted(queue.get() for _ in ps)
    for p in ps:
        p.join()
    procs_s = time.perf_counter() - t
    print(json.dumps({
        "sleep_s": seconds,
        "pool": {"wall_s": pool_s, "results": pooled, "distinct_pids": len({r[2] for r in pooled})},
        "processes": {"wall_s": procs_s, "results": one_each,
                      "distinct_pids": len({r[2] for r in one_each})},
    }))
