#!/usr/bin/env bash
# Side by side with the peers a user would pick instead: multiproc's ProcessPool, Python's
# mp.Pool, loky, pebble and mpire (installed here into a virtual environment from PyPI),
# and procspawn's Pool (built here in its own crate), on the same trivial-task work at 1
# and 2 workers, in one go on one machine. Prints a markdown table (µs per task, medians).
#
#   bench/peers/run.sh [N]        # N tasks per measurement (default 5000)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
n="${1:-5000}"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q mpire loky pebble >&2
(cd "$here/procspawn" && cargo build -q --release) >&2
(cd "$root" && cargo build -q --release) >&2
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
echo "measuring multiproc..." >&2
for w in 1 2; do
    "$root/target/release/multiproc" bench --json --no-python --workers "$w" --n "$n" \
        --filter pool.submit_collect_per_task --filter pool.roundtrip_unpinned \
        --filter pool.map_chunk1_per_task --filter pool.map_auto_per_task |
    grep '"name":"pool\.' |
    sed -E 's/.*"name":"pool\.([a-z_0-9]+)".*"multiproc":([0-9.e+-]+).*/\1 \2/' |
    sed -E 's/^submit_collect_per_task/submit_collect/; s/^roundtrip_unpinned/roundtrip/;
            s/^map_chunk1_per_task/map_chunk1/; s/^map_auto_per_task/map_auto/' |
    awk -v w="$w" '{print "multiproc", $1, w, $2}' >> "$out"
done
echo "measuring procspawn..." >&2
"$here/procspawn/target/release/procspawn-peer" "$n" | awk '{print "procspawn", $0}' >> "$out"
echo "measuring the Python peers..." >&2
"$venv/bin/python" "$here/peers.py" "$n" >> "$out"
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
