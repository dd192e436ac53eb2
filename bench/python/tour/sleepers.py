"""Tour experiment 1, the tutorials' first program: three tasks that each sleep, then print
a sum with a timestamp, on a ThreadPoolExecutor and on a ProcessPoolExecutor. All three
finish in the same second. Usage: sleepers.py SECONDS. Prints one JSON line last."""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone


def task(args):
    n, seconds = args
    time.sleep(seconds)
    total = sum(range(n + 1))
    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} UTC  pid {os.getpid()}: sum(1..={n}) = {total}", file=sys.stderr)
    return total, now


def run(executor_class, seconds):
    with executor_class(max_workers=3) as ex:
        start = time.time()
        t = time.perf_counter()
        out = list(ex.map(task, [(10, seconds), (100, seconds), (1000, seconds)]))
        wall = time.perf_counter() - t
    finished = [now - start for _, now in out]
    return {
        "wall_s": wall,
        "sums": [s for s, _ in out],
        "finished_after_s": finished,
        "spread_s": max(finished) - min(finished),
    }


if __name__ == "__main__":
    seconds = float(sys.argv[1])
    print(json.dumps({
        "sleep_s": seconds,
        "threads": run(ThreadPoolExecutor, seconds),
        "processes": run(ProcessPoolExecutor, seconds),
    }))
