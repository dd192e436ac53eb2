"""Tour experiment 4: I/O-bound. Five tasks that each run the external command `sleep S`
and wait for it: serially, on 5 threads and on 5 processes. Waiting holds no core and
releases the GIL, so threads and processes both take about S seconds. Usage: io.py S."""
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool


def wait_on_child(seconds):
    return subprocess.run(["sleep", seconds]).returncode == 0


if __name__ == "__main__":
    seconds = sys.argv[1]
    tasks = [seconds] * 5
    t = time.perf_counter()
    serial = [wait_on_child(s) for s in tasks]
    serial_s = time.perf_counter() - t
    with ThreadPoolExecutor(max_workers=5) as ex:
        t = time.perf_counter()
        threads = list(ex.map(wait_on_child, tasks))
        threads_s = time.perf_counter() - t
    with Pool(5) as pool:
        t = time.perf_counter()
        procs = pool.map(wait_on_child, tasks)
        procs_s = time.perf_counter() - t
    assert all(serial + threads + procs)
    print(json.dumps({"sleep_s": float(seconds), "tasks": 5, "serial_s": serial_s,
                      "threads_s": threads_s, "processes_s": procs_s}))
