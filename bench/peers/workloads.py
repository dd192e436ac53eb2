"""mpire's three benchmark workloads (sybrenjansen/multiprocessing_benchmarks), scaled to a
small machine, on the Python peers: mp.Pool, loky, pebble, mpire, at 1 and 2 workers. The
same work, sizes and exact-integer checksums as bench/peers/workloads.rs (read its docs for
what each workload is). Prints one `PEER WORKLOAD WORKERS SECONDS CHECKSUM` line per
measurement (median of --repeat trials; each trial starts and stops its pool, as mpire's
do). `--only WORKLOAD` and peer names narrow the run. Run by bench/peers/run.sh inside its virtual environment (numpy, scipy and the peers).

Each peer is used the way its documentation suggests: the image is in shared memory that
workers attach to in an initializer (mpire: `shared_objects`, copy-on-write after fork);
per-worker state lives in a module global made by an initializer, and is handed over at the
end by one collect task per worker behind a barrier (mpire: `worker_state` and
`worker_exit`); the model is built once per worker by an initializer (mpire: `worker_init`).
"""
import hashlib
import multiprocessing as mp
import statistics
import sys
import time
from collections import defaultdict
from multiprocessing import shared_memory

import numpy as np

FULL = dict(image=1000, filters=20, docs=40, words=1000, delta=500, runs=10, evals=10)
QUICK = dict(image=300, filters=4, docs=10, words=200, delta=100, runs=2, evals=4)
WORD = 20
STEP = 5
MASK = (1 << 64) - 1


class Lcg:
    """The generator both languages share: 64-bit LCG (Knuth's MMIX constants)."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & MASK
        return self.s >> 33

    def small(self, k):
        return float(self.next() % (2 * k + 1) - k)


# ---- 1. numerical computation on a shared array ------------------------------------------

IMAGE = None


def attach_image(name, n):
    global IMAGE
    shm = shared_memory.SharedMemory(name=name)
    IMAGE = (shm, np.ndarray((n, n), dtype=np.float64, buffer=shm.buf))


def process_image(f):
    import scipy.signal  # here, not at the top: loky's fresh workers import this module
    return scipy.signal.convolve2d(IMAGE[1], f)[::STEP, ::STEP]


def process_image_mpire(image, f):
    import scipy.signal
    return scipy.signal.convolve2d(image, f)[::STEP, ::STEP]


def make_image(n):
    y, x = np.indices((n, n))
    return ((y * 31 + x * 17) % 256).astype(np.float64)


def make_filters(sz):
    g = Lcg(42)
    return [np.array([g.small(8) for _ in range(16)]).reshape(4, 4) for _ in range(sz["filters"])]


def numerical(peer, sz, w):
    n = sz["image"]
    t = time.perf_counter()
    shm = shared_memory.SharedMemory(create=True, size=n * n * 8)
    img = np.ndarray((n, n), dtype=np.float64, buffer=shm.buf)
    img[:] = make_image(n)
    filters = make_filters(sz)
    total = 0
    try:
        if peer == "mpire":
            import mpire
            with mpire.WorkerPool(n_jobs=w, shared_objects=img) as p:
                for r in p.imap(process_image_mpire, [(f,) for f in filters], chunk_size=1):
                    total += int(r.sum())
        else:
            with pool(peer, w, attach_image, (shm.name, n)) as p:
                for r in imap(peer, p, process_image, filters):
                    total += int(r.sum())
    finally:
        del img
        shm.close()
        shm.unlink()
    return time.perf_counter() - t, total


# ---- 2. stateful computation -------------------------------------------------------------

COUNTS = None


def fresh_counts():
    global COUNTS
    COUNTS = defaultdict(int)


def count_prefixes(counts, doc):
    for word in doc:
        for i in range(1, len(word)):
            counts[word[:i]] += 1


def add_document(doc):
    count_prefixes(COUNTS, doc)


def collect_state(barrier):
    barrier.wait()
    return [(k, v) for k, v in COUNTS.items() if len(k) <= 2]


def add_document_mpire(state, doc):
    count_prefixes(state.setdefault("counts", defaultdict(int)), doc)


def exit_mpire(state):
    return [(k, v) for k, v in state.get("counts", {}).items() if len(k) <= 2]


def documents(sz):
    out, buf, counter = [], b"", 0
    for d in range(sz["docs"]):
        n = sz["words"] + (sz["delta"] if d % 2 == 0 else -sz["delta"])
        doc = []
        for _ in range(n):
            while len(buf) < WORD:
                buf += hashlib.sha256(counter.to_bytes(8, "little")).digest()
                counter += 1
            doc.append(buf[:WORD])
            buf = buf[WORD:]
        out.append(doc)
    return out


MANAGER = None


def stateful(peer, docs, w):
    t = time.perf_counter()
    if peer == "mpire":
        import mpire
        with mpire.WorkerPool(n_jobs=w, use_worker_state=True) as p:
            p.map_unordered(add_document_mpire, [(d,) for d in docs], chunk_size=1,
                            worker_exit=exit_mpire)
            states = p.get_exit_results()
    else:
        # The barrier comes from a manager started once, outside the timing: mp.Pool, loky
        # and pebble pickle task arguments, and a manager's proxy is picklable anywhere.
        barrier = MANAGER.Barrier(w)
        with pool(peer, w, fresh_counts, ()) as p:
            for _ in imap(peer, p, add_document, docs, ordered=False):
                pass
            states = list(imap(peer, p, collect_state, [barrier] * w))
    total = defaultdict(int)
    for state in states:
        for k, v in state:
            total[k] += v
    popular = [c for c in total.values() if c > 3]
    return time.perf_counter() - t, len(popular) * 1_000_000_000 + sum(popular)


# ---- 3. expensive per-worker initialisation ----------------------------------------------

SAMPLES, INPUTS, HIDDEN, OUTPUTS = 2000, 256, 128, 10
MODEL = None


def build_model(seed):
    g = Lcg(seed)
    x = np.array([g.next() % 16 for _ in range(SAMPLES * INPUTS)], dtype=np.float64)
    w1 = np.array([g.small(4) for _ in range(INPUTS * HIDDEN)])
    w2 = np.array([g.small(4) for _ in range(HIDDEN * OUTPUTS)])
    return (x.reshape(SAMPLES, INPUTS), w1.reshape(INPUTS, HIDDEN), w2.reshape(HIDDEN, OUTPUTS))


def load_model(seed):
    global MODEL
    MODEL = build_model(seed)


def predict(model, idx):
    x, w1, w2 = model
    return np.maximum(x @ w1, 0.0) @ w2 + idx


def evaluate_next_batch(idx):
    return predict(MODEL, idx)


def init_mpire(state):
    state["model"] = build_model(7)


def evaluate_mpire(state, idx):
    return predict(state["model"], idx)


def init(peer, sz, w):
    t = time.perf_counter()
    total = 0
    if peer == "mpire":
        import mpire
        with mpire.WorkerPool(n_jobs=w, use_worker_state=True, keep_alive=True) as p:
            for _ in range(sz["runs"]):
                for r in p.imap_unordered(evaluate_mpire, range(sz["evals"]), chunk_size=1,
                                          worker_init=init_mpire):
                    total += int(r.sum())
    else:
        with pool(peer, w, load_model, (7,)) as p:
            for _ in range(sz["runs"]):
                for r in imap(peer, p, evaluate_next_batch, range(sz["evals"]), ordered=False):
                    total += int(r.sum())
    return time.perf_counter() - t, total


# ---- the peers ---------------------------------------------------------------------------

class pool:
    """A context manager for mp.Pool, loky or pebble with an initializer."""

    def __init__(self, peer, w, initializer, initargs):
        self.peer = peer
        if peer == "mp.Pool":
            self.p = mp.get_context("fork").Pool(w, initializer, initargs)
        elif peer == "loky":
            import loky
            self.p = loky.ProcessPoolExecutor(max_workers=w, initializer=initializer,
                                              initargs=initargs)
        elif peer == "pebble":
            import pebble
            self.p = pebble.ProcessPool(max_workers=w, initializer=initializer,
                                        initargs=initargs)

    def __enter__(self):
        return self.p

    def __exit__(self, *exc):
        if self.peer == "mp.Pool":
            self.p.close()
            self.p.join()
        elif self.peer == "loky":
            self.p.shutdown(wait=True)
        else:
            self.p.close()
            self.p.join()


def imap(peer, p, f, items, ordered=True):
    """One task per item (chunk size 1), results as they come (in order if `ordered`)."""
    if peer == "mp.Pool":
        return (p.imap if ordered else p.imap_unordered)(f, items, chunksize=1)
    if peer == "loky":
        futs = [p.submit(f, i) for i in items]
    else:
        futs = [p.schedule(f, args=[i]) for i in items]
    if ordered:
        return (fu.result() for fu in futs)
    import concurrent.futures as cf
    return (fu.result() for fu in cf.as_completed(futs))


def main():
    global MANAGER
    args = sys.argv[1:]
    sz = QUICK if "--quick" in args else FULL
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 3
    peers = [a for a in args if a in ("mp.Pool", "loky", "pebble", "mpire")] or \
        ["mp.Pool", "loky", "pebble", "mpire"]
    MANAGER = mp.get_context("fork").Manager()
    docs = documents(sz)
    runs = [("numerical", lambda peer, w: numerical(peer, sz, w)),
            ("stateful", lambda peer, w: stateful(peer, docs, w)),
            ("init", lambda peer, w: init(peer, sz, w))]
    only = args[args.index("--only") + 1] if "--only" in args else None
    for name, run in runs:
        if only and name != only:
            continue
        for peer in peers:
            for w in (1, 2):
                times, sums = [], []
                for _ in range(repeat):
                    t, s = run(peer, w)
                    times.append(t)
                    sums.append(s)
                assert len(set(sums)) == 1, (peer, name, sums)
                print(f"{peer} {name} {w} {statistics.median(times)} {sums[0]}", flush=True)
    MANAGER.shutdown()


if __name__ == "__main__":
    # Run from the module, not __main__: loky pickles __main__'s functions by value
    # (cloudpickle), and they would not see the module globals the initializers set.
    import workloads
    workloads.main()
