"""multiprocessing.Pipe ping-pong of 16-byte messages, pinned to one CPU and unpinned,
next to a bare os-level socketpair ping-pong in the same run.

The Python side of `cargo bench --bench ipc -- pipe`. Prints medians of 5 runs.
Usage: python3 bench/python/ipc_pipe.py
"""
import multiprocessing as mp
import os
import socket
import statistics
import time

N = 20_000
MSG = b"y" * 16


def echo(conn, other, cpu):
    other.close()  # the parent's end, inherited by fork: else no EOF
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def bare_echo(sock, other, cpu):
    other.close()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        b = sock.recv(64)
        if not b:
            return
        sock.sendall(b)


def pingpong(cpu):
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, a, cpu))
    p.start()
    b.close()
    a.send_bytes(MSG); a.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(N):
        a.send_bytes(MSG)
        a.recv_bytes()
    dt = time.perf_counter() - t0
    a.close(); p.join()
    return dt / N


def bare(cpu):
    a, b = socket.socketpair()
    p = mp.Process(target=bare_echo, args=(b, a, cpu))
    p.start()
    b.close()
    t0 = time.perf_counter()
    for _ in range(N):
        a.sendall(MSG)
        got = 0
        while got < len(MSG):
            got += len(a.recv(64))
    dt = time.perf_counter() - t0
    a.close(); p.join()
    return dt / N


def main():
    allcpus = os.sched_getaffinity(0)
    for cpu in [None, 0]:
        os.sched_setaffinity(0, {cpu} if cpu is not None else allcpus)
        tag = "pinned" if cpu is not None else "unpinned"
        py = statistics.median(pingpong(cpu) for _ in range(5))
        raw = statistics.median(bare(cpu) for _ in range(5))
        print(f"python Pipe 16B {tag}: {py * 1e6:.2f} us/round trip; "
              f"bare socketpair {raw * 1e6:.2f} us; ratio {py / raw:.2f}")
    os.sched_setaffinity(0, allcpus)


if __name__ == "__main__":
    main()
