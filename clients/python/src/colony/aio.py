"""The asyncio flavour of the client: the same calls, awaited.

    async with AsyncColony("tcp://127.0.0.1:7411") as colony:
        squares = await colony.map("square", range(10))
        total = await colony.submit("primes", {"lo": 0, "hi": 100000})
        hits = await colony.counter("hits").add(1)

Requests run on worker threads (the nng calls block); results arrive through the same
long-polling fetch as the synchronous client's and wake asyncio futures."""
import asyncio

from .client import Colony


class AsyncCounter:
    def __init__(self, counter):
        self._counter = counter
        self.name = counter.name

    async def get(self):
        return await asyncio.to_thread(self._counter.get)

    async def add(self, delta=1):
        return await asyncio.to_thread(self._counter.add, delta)

    async def set(self, value):
        return await asyncio.to_thread(self._counter.set, value)

    async def compare_and_set(self, expected, new):
        return await asyncio.to_thread(self._counter.compare_and_set, expected, new)


class AsyncColony:
    """`Colony` for asyncio code. `submit` returns an asyncio future (await it, or pass many to
    asyncio.as_completed / asyncio.gather); `map` returns the outputs in input order."""

    def __init__(self, url="tcp://127.0.0.1:7411", **options):
        self.sync = Colony(url, **options)
        self.session = self.sync.session

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        await asyncio.to_thread(self.sync.close)

    async def submit(self, handler, input=None, **options):
        """Queues one task; returns an asyncio future of its output (`task_id` on it too)."""
        future = await asyncio.to_thread(self.sync.submit, handler, input, **options)
        wrapped = asyncio.wrap_future(future)
        wrapped.task_id = future.task_id
        return wrapped

    async def run(self, handler, input=None, **options):
        return await asyncio.to_thread(self.sync.run, handler, input, **options)

    async def map(self, handler, inputs, *, chunksize=1, raw=False, **options):
        """The outputs of `handler` over every input, in input order; raises the first failure
        (in input order) once every task has finished."""
        futures, sizes = await asyncio.to_thread(self.sync._submit_map, handler, list(inputs), chunksize, raw, options)
        values = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        outputs = []
        for value, size in zip(values, sizes):
            if isinstance(value, BaseException):
                raise value
            if size is None:
                outputs.append(value)
                continue
            for entry in value:
                if isinstance(entry, BaseException):
                    raise entry
                outputs.append(entry)
        return outputs

    def counter(self, name):
        return AsyncCounter(self.sync.counter(name))

    async def counters(self):
        return await asyncio.to_thread(self.sync.counters)

    async def set_limit(self, name, size):
        return await asyncio.to_thread(self.sync.set_limit, name, size)

    async def limits(self):
        return await asyncio.to_thread(self.sync.limits)

    async def status(self, figures=False):
        return await asyncio.to_thread(self.sync.status, figures)

    async def cancel(self, tasks):
        ids = [getattr(t, "task_id", t) for t in tasks]
        return await asyncio.to_thread(self.sync.cancel, ids)

    async def result(self, task_id, wait=0.0, raw=False):
        return await asyncio.to_thread(self.sync.result, task_id, wait, raw)
