"""Tour experiment 5: a shared counter. Two workers each add 1 COUNT times:
threads with no lock, threads with a Lock, processes that count locally and send their sums
through a Queue, and processes adding into SharedMemory under a Semaphore.
Usage: counter.py COUNT LOCKED_COUNT (the locked variants take one lock per addition, which
is slow in Python: they run LOCKED_COUNT additions per worker)."""
import json
import sys
import threading
import time
from multiprocessing import Process, Queue, Semaphore, shared_memory

counter = 0


def add_unlocked(n):
    global counter
    for _ in range(n):
        counter += 1


def add_locked(n, lock):
    global counter
    for _ in range(n):
        with lock:
            counter += 1


def count_locally(n, queue):
    local = 0
    for _ in range(n):
        local += 1
    queue.put(local)


def add_shared(n, name, sem):
    shm = shared_memory.SharedMemory(name=name)
    buf = shm.buf
    for _ in range(n):
        with sem:
            value = int.from_bytes(buf[0:8], "little")
            buf[0:8] = (value + 1).to_bytes(8, "little")
    del buf
    shm.close()


def on_threads(target, *args):
    global counter
    counter = 0
    ts = [threading.Thread(target=target, args=args) for _ in range(2)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return {"count_per_worker": args[0], "total": counter, "wall_s": time.perf_counter() - t}


def on_processes_queue(n):
    queue = Queue()
    ps = [Process(target=count_locally, args=(n, queue)) for _ in range(2)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    total = queue.get() + queue.get()
    for p in ps:
        p.join()
    return {"count_per_worker": n, "total": total, "wall_s": time.perf_counter() - t}


def on_processes_shared(n):
    shm = shared_memory.SharedMemory(create=True, size=8)
    shm.buf[0:8] = bytes(8)
    sem = Semaphore(1)
    ps = [Process(target=add_shared, args=(n, shm.name, sem)) for _ in range(2)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    wall = time.perf_counter() - t
    total = int.from_bytes(shm.buf[0:8], "little")
    shm.close()
    shm.unlink()
    return {"count_per_worker": n, "total": total, "wall_s": wall}


if __name__ == "__main__":
    n, locked_n = int(sys.argv[1]), int(sys.argv[2])
    print(json.dumps({
        "threads_no_lock": on_threads(add_unlocked, n),
        "threads_lock": on_threads(add_locked, locked_n, threading.Lock()),
        "processes_queue": on_processes_queue(n),
        "processes_shared_memory": on_processes_shared(locked_n),
    }))
