"""The Python node of the tests: `python handlers.py URL NAME THREADS`."""
import sys
import threading
import time

import colony.node

started = threading.Event()


def square(x):
    return x * x


def boom(message):
    raise RuntimeError(f"boom: {message}")


def count(task):
    counter = colony.node.current().counter(task["counter"])
    for _ in range(task["times"]):
        counter.add(1)
    return task["times"]


def nap(seconds):
    time.sleep(seconds)
    return seconds


def where(seconds):
    time.sleep(seconds)
    return sys.argv[2]


def deps(_):
    return sorted(colony.node.current().dependencies.values())


if __name__ == "__main__":
    url, name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    colony.node.run(url, handlers={"square": square, "boom": boom, "pycount": count, "nap": nap, "deps": deps, "where": where},
                    threads=threads, name=name, drain_deadline=5, log=lambda line: print(line, flush=True))
