#!/usr/bin/env python3
"""W1 and W2 of shared/BENCHMARKS.md from Python: the Colony client against a coordinator and
one Swift node (2 thread slots) started here, next to concurrent.futures.ProcessPoolExecutor
(2 workers, bench/peers.py's functions) in the same run on the same box.

W1: 20,000 no-op (echo) tasks through map, tasks/s (chunksize 1; chunksize 100 as well).
W2: 2,000 tasks one after the other, submit and wait for the result: p50 and p99 in µs
(Colony: submit().result() and run(), the one-round-trip form).

Usage: python bench.py [--json]   (COLONY_BIN, else .build/release/colony, else .build/debug/colony)
"""
import concurrent.futures as cf
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(HERE / "src"))

import colony  # noqa: E402
from peers import echo, percentile  # noqa: E402

W1_TASKS = 20_000
W2_TASKS = 2_000


def binary():
    for candidate in (os.environ.get("COLONY_BIN"), REPO / ".build/release/colony", REPO / ".build/debug/colony"):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    sys.exit("no colony binary: swift build -c release --product colony, or set COLONY_BIN")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def w1(map_function, function, chunksize=1):
    list(map_function(function, range(2000), chunksize=chunksize))  # warm-up
    start = time.perf_counter()
    out = list(map_function(function, range(W1_TASKS), chunksize=chunksize))
    elapsed = time.perf_counter() - start
    assert out == list(range(W1_TASKS)), "W1 outputs differ from inputs"
    return round(W1_TASKS / elapsed)


def w2(call):
    for i in range(100):
        call(i)
    latencies = []
    for i in range(W2_TASKS):
        t0 = time.perf_counter()
        assert call(i) == i, "W2 output differs from input"
        latencies.append((time.perf_counter() - t0) * 1e6)
    latencies.sort()
    return {"p50_us": round(percentile(latencies, 0.5)), "p99_us": round(percentile(latencies, 0.99))}


def main():
    colony_bin = binary()
    url = f"tcp://127.0.0.1:{free_port()}"
    figures = {"colony_binary": colony_bin}
    with tempfile.TemporaryDirectory() as directory:
        coordinator = subprocess.Popen([colony_bin, "coordinator", "--listen", url, "--state", ":memory:"],
                                       stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "coordinator.log"), "wb"))
        node = subprocess.Popen([colony_bin, "node", "--coordinator", url, "--threads", "2", "--processes", "0", "--name", "bench"],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "node.log"), "wb"))
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client = colony.Colony(url)
                    if client.status().nodes:
                        break
                    client.close()
                except colony.Unreachable:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("the coordinator or the node did not start")
                time.sleep(0.05)
            with client:
                figures["colony_w1_tasks_per_s"] = w1(client.map, "echo")
                figures["colony_w1_chunk100_tasks_per_s"] = w1(client.map, "echo", chunksize=100)
                figures["colony_w2_submit_result"] = w2(lambda i: client.submit("echo", i).result())
                figures["colony_w2_run"] = w2(lambda i: client.run("echo", i))
        finally:
            for process in (node, coordinator):  # the node first: it drains while its coordinator is up
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        figures["process_pool_w1_tasks_per_s"] = w1(pool.map, echo)
        figures["process_pool_w1_chunk100_tasks_per_s"] = w1(pool.map, echo, chunksize=100)
        figures["process_pool_w2"] = w2(lambda i: pool.submit(echo, i).result())
    if "--json" in sys.argv:
        print(json.dumps(figures, indent=2))
        return
    print(f"binary: {colony_bin}")
    print(f"{'':34}{'Colony (Python client)':>24}{'ProcessPoolExecutor(2)':>24}")
    print(f"{'W1 echo tasks/s (chunksize 1)':34}{figures['colony_w1_tasks_per_s']:>24,}{figures['process_pool_w1_tasks_per_s']:>24,}")
    print(f"{'W1 echo tasks/s (chunksize 100)':34}{figures['colony_w1_chunk100_tasks_per_s']:>24,}"
          f"{figures['process_pool_w1_chunk100_tasks_per_s']:>24,}")
    pp = figures["process_pool_w2"]
    for label, key in (("W2 submit().result() p50/p99 µs", "colony_w2_submit_result"), ("W2 run() p50/p99 µs", "colony_w2_run")):
        c = figures[key]
        print(f"{label:34}{c['p50_us']:>15,} / {c['p99_us']:<6,}{pp['p50_us']:>15,} / {pp['p99_us']:<6,}")


if __name__ == "__main__":
    main()
