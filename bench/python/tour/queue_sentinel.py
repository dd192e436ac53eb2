"""Tour experiment 7: a producer and a consumer process through a multiprocessing.Queue;
the producer puts None when it is done, and the consumer stops at that sentinel.
Usage: queue_sentinel.py N."""
import json
import sys
import time
from multiprocessing import Process, Queue


def producer(queue, n):
    for i in range(1, n + 1):
        queue.put(i)
    queue.put(None)


def consumer(queue, results):
    count = total = 0
    while (item := queue.get()) is not None:
        count += 1
        total += item
    results.put((count, total))


if __name__ == "__main__":
    n = int(sys.argv[1])
    queue, results = Queue(), Queue()
    t = time.perf_counter()
    ps = [Process(target=producer, args=(queue, n)), Process(target=consumer, args=(queue, results))]
    for p in ps:
        p.start()
    count, total = results.get()
    for p in ps:
        p.join()
    wall = time.perf_counter() - t
    print(json.dumps({"items": n, "consumed": count, "sum": total, "wall_s": wall}))
