# Sourced by scripts/test and .ci/run: installs what the tests need where it is missing
# (Debian, as root), and sets what Open MPI needs to run as root.

# The interop tests start a real python3 (3.11 here).
if ! command -v python3 >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 >/dev/null
fi

# MpiPool (feature `mpi`) builds against Open MPI through bindgen (libclang), and its
# tests run mpirun.
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1 \
    || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev >/dev/null
fi

# Open MPI refuses to run as root unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The tour's chart tests (`--chart`) draw text with a TrueType font.
if ! ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1 \
    && ! fc-match -f '%{file}' sans-serif 2>/dev/null | grep -q '\.ttf$'; then
    apt-get update -qq && apt-get install -y -qq fonts-dejavu-core >/dev/null
fi

# tests/ndarray.rs (feature `ndarray`) checks SharedMemory's array views against a real
# numpy. (The test fails, it does not skip, when numpy is still missing after this.)
if ! python3 -c 'import numpy' >/dev/null 2>&1; then
    python3 -m pip install -q numpy >/dev/null 2>&1 \
        || python3 -m pip install -q --break-system-packages numpy >/dev/null 2>&1 || true
fi
