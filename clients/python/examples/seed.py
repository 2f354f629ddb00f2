#!/usr/bin/env python3
"""The guide's examples on a Colony cluster, from Python.

    python examples/seed.py [COORDINATOR_URL]

1. squares with map (in input order), 2. primes over ranges (the Swift nodes' built-in
`primes`, checked against a local count), 3. a shared counter to exactly 400 (4 tasks x 100
increments, applied once each), 4. a limit of 2 over 5 workers (at most 2 run at once).
The Python functions run on a Python node this script starts in a thread next to whatever
nodes the cluster has; `primes` needs a Swift node (`colony node`). Exits 1 if a result is off.
"""
import sys
import threading
import time

import colony
import colony.node


def square(x):
    return x * x


def increment(times):
    hits = colony.node.current().counter("seed-hits")
    for _ in range(times):
        hits.add(1)
    return times


def work(seconds):
    time.sleep(seconds)
    return seconds


def count_primes(lo, hi):
    return sum(1 for n in range(max(lo, 2), hi) if all(n % d for d in range(2, int(n ** 0.5) + 1)))


def main(url):
    node = colony.node.Node(url, {"square": square, "increment": increment, "work": work}, threads=5, name="seed-python-node")
    serving = threading.Thread(target=node.run, daemon=True)
    serving.start()
    problems = []
    try:
        with colony.Colony(url) as cluster:
            squares = list(cluster.map("square", range(10)))
            print("1. squares:", squares)
            if squares != [x * x for x in range(10)]:
                problems.append("squares")

            ranges = [{"lo": lo, "hi": lo + 25_000} for lo in range(0, 200_000, 25_000)]
            counts = list(cluster.map("primes", ranges))
            print(f"2. primes below 200,000 in 8 ranges: {counts}, total {sum(counts)}")
            if sum(counts) != count_primes(0, 200_000):
                problems.append("primes")

            cluster.counter("seed-hits").set(0)
            list(cluster.map("increment", [100] * 4))
            hits = cluster.counter("seed-hits").get()
            print("3. shared counter after 4 x 100 increments:", hits)
            if hits != 400:
                problems.append("counter")

            cluster.set_limit("seed-pair", 2)
            started = time.monotonic()
            list(cluster.map("work", [0.2] * 5, uses=["seed-pair"]))
            elapsed = time.monotonic() - started
            most = next(limit.high_water for limit in cluster.limits() if limit.name == "seed-pair")
            print(f"4. 5 tasks under a limit of 2: at most {most} at once, {elapsed:.2f} s")
            if most != 2 or elapsed < 0.6:
                problems.append("limit")
    finally:
        node.drain(5)
        serving.join(10)
    if problems:
        print("wrong:", ", ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7411"))
