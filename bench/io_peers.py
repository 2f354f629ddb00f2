#!/usr/bin/env python3
"""The Python peers of W8 and W9 (issue 20), run by `colony bench` in the same run as Colony's
figures; also usable alone. Prints one JSON object. A figure is printed only when the peer did
the work (every answer checked); otherwise "not_counted" says why, by figure.

W8: N fetches of URL (a server answering after 50 ms), with ThreadPoolExecutor(32) + urllib
    and with asyncio (aiohttp when installed, else the stdlib's asyncio streams); each the
    median wall of R runs, as Colony's figure.
W9: the mean of the numbers in FILE (one per line) in CHUNKS chunks of whole lines, each
    summed in a ProcessPoolExecutor(2) worker.

Usage: python3 bench/io_peers.py [--w8 URL --w8-fetches N --w8-runs R] [--w9 FILE --w9-chunks K]
"""
import argparse
import asyncio
import concurrent.futures as cf
import json
import statistics
import time
import urllib.parse
import urllib.request


def fetch_urllib(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


async def fetch_streams(url):
    """One GET over asyncio streams (HTTP/1.1, Connection: close): status and body."""
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    target = parts.path or "/"
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def fetch_all_asyncio(url, count):
    try:
        import aiohttp
    except ImportError:
        return "asyncio streams", await asyncio.gather(*(fetch_streams(url) for _ in range(count)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one():
            async with session.get(url) as response:
                return response.status, await response.read()
        return "aiohttp", await asyncio.gather(*(one() for _ in range(count)))


def w8(url, count, runs, figures, not_counted):
    """Each contender's median wall over `runs` runs (one run is ~0.1 s: a single one is mostly
    the box's noise)."""
    expected = fetch_urllib(url)  # warm-up, and the answer every fetch must get
    walls, wrong = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        with cf.ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(fetch_urllib, [url] * count))
        walls.append(time.perf_counter() - start)
        wrong += sum(answer != expected for answer in answers)
    if wrong:
        not_counted["w8_py_threads32_wall_s"] = f"{wrong} of {count * runs} answers wrong"
    else:
        figures["w8_py_threads32_wall_s"] = round(statistics.median(walls), 3)
    walls, wrong = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        client, answers = asyncio.run(fetch_all_asyncio(url, count))
        walls.append(time.perf_counter() - start)
        wrong += sum(answer != expected for answer in answers)
    figures["w8_py_asyncio_client"] = client
    if wrong:
        not_counted["w8_py_asyncio_wall_s"] = f"{wrong} of {count * runs} answers wrong"
    else:
        figures["w8_py_asyncio_wall_s"] = round(statistics.median(walls), 3)


def sum_chunk(text):
    numbers = [float(line) for line in text.splitlines() if line]
    return sum(numbers), len(numbers)


def w9(path, chunks, figures, not_counted):
    start = time.perf_counter()
    with open(path) as file:
        lines = file.read().splitlines(keepends=True)
    size = (len(lines) + chunks - 1) // chunks
    parts = ["".join(lines[i:i + size]) for i in range(0, len(lines), size)]
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        sums = list(pool.map(sum_chunk, parts))
    total = sum(s for s, _ in sums)
    count = sum(n for _, n in sums)
    wall = time.perf_counter() - start
    mean = total / count if count else float("nan")
    figures["w9_py_mean"] = mean
    if count != len(lines):
        not_counted["w9_py_processes2_wall_s"] = f"summed {count} of {len(lines)} numbers"
    else:
        figures["w9_py_processes2_wall_s"] = round(wall, 3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--w8")
    parser.add_argument("--w8-fetches", type=int, default=400)
    parser.add_argument("--w8-runs", type=int, default=5)
    parser.add_argument("--w9")
    parser.add_argument("--w9-chunks", type=int, default=10)
    arguments = parser.parse_args()
    figures, not_counted = {}, {}
    if arguments.w8:
        w8(arguments.w8, arguments.w8_fetches, arguments.w8_runs, figures, not_counted)
    if arguments.w9:
        w9(arguments.w9, arguments.w9_chunks, figures, not_counted)
    if not_counted:
        figures["not_counted"] = not_counted
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
