#!/usr/bin/env bash
# Side by side with the peers a user would pick instead: multiproc's ProcessPool, Python's
# mp.Pool, loky, pebble and mpire (installed here into a virtual environment from PyPI),
# and procspawn's Pool (built here in its own crate), on the same trivial-task work at 1
# and 2 workers, in one go on one machine. Then mpire's three benchmark workloads
# (bench/peers/workloads.rs on multiproc, bench/peers/workloads.py on mp.Pool, loky, pebble
# and mpire), each result checked equal across implementations. Prints two markdown tables
# (µs per task and seconds per workload, medians).
#
#   bench/peers/run.sh [N] [--quick]   # N trivial tasks per measurement (default 5000);
#                                      # --quick: tiny workloads, one trial (a smoke run)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
n=5000
quick=()
for a in "$@"; do
    case "$a" in
        --quick) quick=(--quick --repeat 1) ;;
        *) n="$a" ;;
    esac
done
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q mpire loky pebble numpy scipy >&2
(cd "$here/procspawn" && cargo build -q --release) >&2
(cd "$root" && cargo build -q --release && cargo build -q --release --features ndarray --example peers_workloads) >&2
# The workers are the parallelism: numpy's BLAS gets one thread per process, everywhere.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
out="$(mktemp)"
work="$(mktemp)"
trap 'rm -f "$out" "$work"' EXIT
target="${CARGO_TARGET_DIR:-$root/target}"
echo "measuring multiproc..." >&2
for w in 1 2; do
    "$target/release/multiproc" bench --json --no-python --workers "$w" --n "$n" \
        --filter pool.submit_collect_per_task --filter pool.roundtrip_unpinned \
        --filter pool.map_chunk1_per_task --filter pool.map_auto_per_task |
    grep '"name":"pool\.' |
    sed -E 's/.*"name":"pool\.([a-z_0-9]+)".*"multiproc":([0-9.e+-]+).*/\1 \2/' |
    sed -E 's/^submit_collect_per_task/submit_collect/; s/^roundtrip_unpinned/roundtrip/;
            s/^map_chunk1_per_task/map_chunk1/; s/^map_auto_per_task/map_auto/' |
    awk -v w="$w" '{print "multiproc", $1, w, $2}' >> "$out"
done
echo "measuring procspawn..." >&2
"${CARGO_TARGET_DIR:-$here/procspawn/target}/release/procspawn-peer" "$n" | awk '{print "procspawn", $0}' >> "$out"
echo "measuring the Python peers..." >&2
"$venv/bin/python" "$here/peers.py" "$n" >> "$out"
echo "mpire's workloads on multiproc..." >&2
"$target/release/examples/peers_workloads" "${quick[@]}" >> "$work"
echo "mpire's workloads on the Python peers..." >&2
(cd "$here" && "$venv/bin/python" workloads.py "${quick[@]}") >> "$work"
python3 - "$out" <<'PY'
import sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    peer, name, w, v = line.split()
    rows[(peer, int(w))][name] = float(v)
cols = ["submit_collect", "roundtrip", "map_chunk1", "map_auto"]
print("| peer | workers | submit+collect, µs/task | round trip, µs | map chunk 1, µs/task | map auto, µs/item |")
print("|---|---|---|---|---|---|")
order = ["multiproc", "mp.Pool", "loky", "pebble", "mpire", "procspawn"]
for (peer, w) in sorted(rows, key=lambda k: (order.index(k[0]), k[1])):
    r = rows[(peer, w)]
    cells = [f"{r[c]:.3g}" if c in r else "" for c in cols]
    print(f"| {peer} | {w} | " + " | ".join(cells) + " |")
PY
echo
python3 - "$work" <<'PY'
import sys, collections
t = collections.defaultdict(dict)
sums = collections.defaultdict(set)
for line in open(sys.argv[1]):
    peer, name, w, secs, checksum = line.split()
    t[(peer, int(w))][name] = float(secs)
    sums[name].add(checksum)
bad = {k: v for k, v in sums.items() if len(v) != 1}
if bad:
    sys.exit(f"checksums differ between implementations: {bad}")
cols = ["numerical", "stateful", "init"]
print("| peer | workers | numerical, s | stateful, s | init, s |")
print("|---|---|---|---|---|")
order = ["multiproc", "mp.Pool", "loky", "pebble", "mpire"]
for (peer, w) in sorted(t, key=lambda k: (order.index(k[0]), k[1])):
    r = t[(peer, w)]
    cells = [f"{r[c]:.3g}" if c in r else "" for c in cols]
    print(f"| {peer} | {w} | " + " | ".join(cells) + " |")
print()
print("checksums (equal in every implementation): " +
      ", ".join(f"{k} {next(iter(v))}" for k, v in sums.items()))
PY
