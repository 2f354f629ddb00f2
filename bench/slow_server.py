#!/usr/bin/env python3
"""W8's HTTP server: answers every request with "ok" after 50 ms, each connection on its own,
with a listen backlog of 4096 (nng's HTTP server listens with 128: 400 connections at once
overflowed it now and then, and the dropped SYN cost that contender a 1 s retransmit).
Runs in a process of its own, so that it shares no threads with the contenders' clients.
Prints its port on the first line of stdout; stops when stdin closes.

Usage: python3 bench/slow_server.py [--delay-ms 50]
"""
import argparse
import asyncio
import sys

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def serve(delay):
    async def answer(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay)
            writer.write(ANSWER)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # Until the bench closes our stdin.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=50)
    asyncio.run(serve(parser.parse_args().delay_ms / 1000))


if __name__ == "__main__":
    main()
