#!/usr/bin/env python3
"""W1-W5 of shared/BENCHMARKS.md on Python's concurrent.futures pools (2 workers), so that
`colony bench` figures can be compared with a peer measured in the same run on the same box.
A figure is printed only when the pool did the work (every output checked); otherwise
"not_counted" says why, by figure.

Usage: python3 bench/peers.py [--json] [--w3-limit N]
"""
import concurrent.futures as cf
import json
import multiprocessing
import random
import sys
import threading
import time

_shared = None  # the W4 counter: a multiprocessing.Value, or a [value, lock] pair for threads


def _init_shared(value):
    global _shared
    _shared = value


def increment_100(_):
    if isinstance(_shared, list):
        for _ in range(100):
            with _shared[1]:
                _shared[0] += 1
    else:
        for _ in range(100):
            with _shared.get_lock():
                _shared.value += 1
    return 100


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def echo(x):
    return x


def count_primes(bounds):
    lo, hi = bounds
    count = 0
    for n in range(lo, hi):
        if n < 2:
            continue
        if n < 4:
            count += 1
            continue
        if n % 2 == 0:
            continue
        d = 3
        prime = True
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 2
        if prime:
            count += 1
    return count


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def run(pool_class, w3_limit, serial_s, serial_primes):
    figures = {}
    not_counted = {}

    def count(keys, problem, values):
        """Keeps the figures `values` (by key) unless `problem` says what was wrong."""
        if problem:
            for key in keys:
                not_counted[key] = problem
        else:
            figures.update(values)

    with pool_class(max_workers=2) as pool:
        list(pool.map(echo, range(2000)))  # warm-up
        start = time.perf_counter()
        out = list(pool.map(echo, range(20000), chunksize=1))
        elapsed = time.perf_counter() - start
        count(["w1_tasks_per_s"], None if out == list(range(20000)) else "outputs differ from inputs",
              {"w1_tasks_per_s": round(20000 / elapsed)})
        latencies = []
        wrong = 0
        for i in range(2000):
            t0 = time.perf_counter()
            if pool.submit(echo, i).result() != i:
                wrong += 1
            latencies.append((time.perf_counter() - t0) * 1e6)
        latencies.sort()
        count(["w2_p50_us", "w2_p99_us"], f"{wrong} of 2000 outputs wrong" if wrong else None,
              {"w2_p50_us": round(percentile(latencies, 0.5)), "w2_p99_us": round(percentile(latencies, 0.99))})
        step = (w3_limit + 63) // 64
        ranges = [(lo, min(lo + step, w3_limit)) for lo in range(0, w3_limit, step)]
        start = time.perf_counter()
        total = sum(pool.map(count_primes, ranges))
        wall = time.perf_counter() - start
        count(["w3_wall_s", "w3_speedup"],
              None if total == serial_primes else f"counted {total} primes, the serial loop {serial_primes}",
              {"w3_wall_s": round(wall, 3), "w3_speedup": round(serial_s / wall, 3)})
        figures["w3_primes"] = total
    # W5: 200 sleeps, 90% 1 ms and 10% 50 ms (fixed seed), makespan over sum / 2 workers.
    rng = random.Random(42)
    sleeps = [0.05 if rng.random() < 0.1 else 0.001 for _ in range(200)]
    with pool_class(max_workers=2) as pool:
        start = time.perf_counter()
        slept = list(pool.map(sleep_for, sleeps))
        makespan = time.perf_counter() - start
    count(["w5_ratio"], None if slept == sleeps else "outputs differ from inputs",
          {"w5_ratio": round(makespan / (sum(sleeps) / 2), 3)})
    # W4: 200 tasks x 100 increments of one shared counter.
    if pool_class is cf.ThreadPoolExecutor:
        shared = [0, threading.Lock()]
        _init_shared(shared)
        pool = pool_class(max_workers=2)
    else:
        shared = multiprocessing.Value("q", 0)
        pool = pool_class(max_workers=2, initializer=_init_shared, initargs=(shared,))
    with pool:
        start = time.perf_counter()
        list(pool.map(increment_100, range(200)))
        elapsed = time.perf_counter() - start
    final = shared[0] if isinstance(shared, list) else shared.value
    figures["w4_final"] = final
    count(["w4_incr_per_s"], None if final == 20000 else f"final value {final}, not 20000",
          {"w4_incr_per_s": round(20000 / elapsed)})
    if not_counted:
        figures["not_counted"] = not_counted
    return figures


def main():
    w3_limit = int(sys.argv[sys.argv.index("--w3-limit") + 1]) if "--w3-limit" in sys.argv else 2_000_000
    start = time.perf_counter()
    serial = count_primes((0, w3_limit))
    serial_s = time.perf_counter() - start
    results = {
        "w3_serial_s": round(serial_s, 3),
        "w3_serial_primes": serial,
        "thread_pool": run(cf.ThreadPoolExecutor, w3_limit, serial_s, serial),
        "process_pool": run(cf.ProcessPoolExecutor, w3_limit, serial_s, serial),
    }
    if "--json" in sys.argv:
        print(json.dumps(results))
    else:
        for name in ("thread_pool", "process_pool"):
            print(name, results[name])
        print("serial primes", serial, "in", results["w3_serial_s"], "s")


if __name__ == "__main__":
    main()
