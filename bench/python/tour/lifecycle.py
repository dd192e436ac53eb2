"""Tour experiment 2: the life of a Thread and of a Process. Start three of each; print
name, ident / pid and is_alive() before and after join(); then threading.enumerate() and
multiprocessing.active_children() once all are done. Usage: lifecycle.py SECONDS."""
import json
import multiprocessing
import sys
import threading
import time


def nap(seconds):
    time.sleep(seconds)


def threads(seconds):
    ts = [threading.Thread(target=nap, args=(seconds,), name=f"Thread-{i}") for i in (1, 2, 3)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    rows = [{"name": th.name, "ident": th.ident, "alive_before_join": th.is_alive()} for th in ts]
    for th, row in zip(ts, rows):
        th.join()
        row["alive_after_join"] = th.is_alive()
    wall = time.perf_counter() - t
    return {"wall_s": wall, "threads": rows, "enumerate": [th.name for th in threading.enumerate()]}


def processes(seconds):
    ps = [multiprocessing.Process(target=nap, args=(seconds,), name=f"Process-{i}") for i in (1, 2, 3)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    rows = [{"name": p.name, "pid": p.pid, "alive_before_join": p.is_alive()} for p in ps]
    for p, row in zip(ps, rows):
        p.join()
        row["alive_after_join"] = p.is_alive()
        row["exitcode"] = p.exitcode
    wall = time.perf_counter() - t
    return {
        "wall_s": wall,
        "processes": rows,
        "active_children": [p.name for p in multiprocessing.active_children()],
    }


if __name__ == "__main__":
    seconds = float(sys.argv[1])
    print(json.dumps({"sleep_s": seconds, "threads": threads(seconds), "processes": processes(seconds)}))
