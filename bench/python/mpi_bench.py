"""mpi4py.futures.MPIPoolExecutor on the same work as `multiproc bench --filter mpi`.

10,000 tiny tasks over 4 ranks on this machine (rank 0 drives, ranks 1-3 serve, as
mpi4py does): `map` as called (mpi4py's default chunksize=1), `map` in the same chunks as
multiproc's (`--chunksize`, default 625: 10,000 / (4 x 4 workers)), and 2,000 `submit` +
`result`; per task in microseconds, medians of several repetitions.

Run as `python3 mpi_bench.py [--reps N]`: it installs mpi4py into a virtual environment
(built against Open MPI's `mpicc`), then starts itself under `mpirun -n 4`, and prints one
line `RESULT {json}`.
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.environ.get("MPI4PY_VENV", os.path.join(ROOT, "target", "mpi4py-venv"))
N = 10_000
SUBMIT_N = 2_000


def ident(x):
    return x


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if subprocess.call([py, "-c", "import mpi4py.futures"], stderr=subprocess.DEVNULL) != 0:
        subprocess.check_call([py, "-m", "pip", "install", "-q", "mpi4py"])
    return py


def child(reps, chunk):
    from mpi4py.futures import MPIPoolExecutor

    with MPIPoolExecutor() as ex:
        workers = ex.num_workers
        list(ex.map(ident, range(N), chunksize=chunk))

        def one_map(chunksize):
            t = time.perf_counter()
            list(ex.map(ident, range(N), chunksize=chunksize))
            return (time.perf_counter() - t) * 1e6 / N

        def one_submit():
            t = time.perf_counter()
            fs = [ex.submit(ident, i) for i in range(SUBMIT_N)]
            for f in fs:
                f.result()
            return (time.perf_counter() - t) * 1e6 / SUBMIT_N

        map_default_us = statistics.median(one_map(1) for _ in range(reps))
        map_us = statistics.median(one_map(chunk) for _ in range(reps))
        submit_us = statistics.median(one_submit() for _ in range(reps))
    print("RESULT " + json.dumps(
        {"map_default_us": round(map_default_us, 3), "map_us": round(map_us, 3),
         "submit_us": round(submit_us, 3), "workers": workers, "chunksize": chunk}),
        flush=True)


def main():
    def arg(name, default):
        if name in sys.argv:
            return int(sys.argv[sys.argv.index(name) + 1])
        return default

    reps, chunk = arg("--reps", 5), arg("--chunksize", 625)
    if "--child" in sys.argv:
        child(reps, chunk)
        return
    py = ensure_venv()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "-n", "4", "--oversubscribe", "--bind-to", "none",
           "--mca", "mpi_yield_when_idle", "1", "--mca", "btl", "self,vader",
           py, "-m", "mpi4py.futures", os.path.abspath(__file__), "--child", "--reps", str(reps), "--chunksize", str(chunk)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        sys.stderr.write(out.stdout + out.stderr)
        sys.exit(1)
    print(line)


if __name__ == "__main__":
    main()
