"""The Python client against a real coordinator and a Swift node."""
import asyncio
import threading

import pytest

import colony
from colony import colony_pb2 as pb


def test_submit_returns_a_future_of_the_decoded_output(client):
    future = client.submit("primes", {"lo": 0, "hi": 100000})
    assert isinstance(future, colony.TaskFuture) and future.task_id > 0
    assert future.result(timeout=30) == 9592


def test_map_keeps_input_order_with_and_without_chunks(client):
    inputs = list(range(500))
    assert list(client.map("echo", inputs)) == inputs
    assert list(client.map("echo", inputs, chunksize=64)) == inputs
    assert list(client.map("echo", [{"k": "v"}, [1, 2], None, "s"], chunksize=3)) == [{"k": "v"}, [1, 2], None, "s"]


def test_map_raises_the_failed_input_in_order_with_chunks(client):
    outputs = client.map("fail", ["first", "second"], chunksize=2)
    with pytest.raises(colony.TaskFailed) as failure:
        next(outputs)
    assert failure.value.reason == "first" and failure.value.kind is colony.FailureKind.ERROR


def test_as_completed_yields_every_future(client):
    futures = [client.submit("sleep", s) for s in (0.3, 0.0, 0.1)]
    done = [f.result() for f in colony.as_completed(futures, timeout=30)]
    assert sorted(done) == [0.0, 0.1, 0.3]


def test_run_is_submit_and_wait(client):
    assert client.run("echo", {"x": 1}) == {"x": 1}


def test_raw_inputs_and_outputs_are_bytes(client):
    assert client.submit("echo", b"\x00\xffbytes", raw=True).result(timeout=30) == b"\x00\xffbytes"


def test_a_failed_task_raises_its_one_line_message_and_kind(client):
    with pytest.raises(colony.TaskFailed) as failure:
        client.submit("fail", "it broke").result(timeout=30)
    error = failure.value
    assert error.kind is colony.FailureKind.ERROR and error.reason == "it broke" and error.node == "swift"
    assert str(error) == f"task {error.task_id} failed on swift: it broke"


def test_a_timeout_fails_with_kind_timeout(client):
    with pytest.raises(colony.TaskFailed) as failure:
        client.submit("sleep", 5, timeout=0.2).result(timeout=30)
    assert failure.value.kind is colony.FailureKind.TIMEOUT


def test_a_refused_submit_says_why_and_carries_the_code(client):
    with pytest.raises(colony.Refused) as refusal:
        client.submit("echo", 1, uses=["no-such-limit"])
    assert refusal.value.code == pb.ErrorReply.CODE_INVALID_ARGUMENT
    assert "unknown limit 'no-such-limit'" in str(refusal.value) and "\n" not in str(refusal.value)


def test_bad_inputs_are_refused_before_sending(client):
    with pytest.raises(colony.BadInput):
        client.submit("echo", object())
    with pytest.raises(colony.BadInput):
        client.submit("echo", "x" * (17 << 20))
    with pytest.raises(colony.BadInput):
        client.submit("echo", 1, timeout=0)


def test_nothing_listening_is_one_line():
    with pytest.raises(colony.Unreachable) as error:
        colony.Colony("tcp://127.0.0.1:1")
    assert str(error.value) == "nothing listening at tcp://127.0.0.1:1 (connection refused)"


def test_counters_are_exact_under_concurrent_adds(client):
    hits = client.counter("client-hits")
    hits.set(0)
    threads = [threading.Thread(target=lambda: [hits.add(1) for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hits.get() == 200
    assert hits.compare_and_set(200, 7) and not hits.compare_and_set(200, 8)
    assert client.counters()["client-hits"] == 7


def test_task_counter_changes_apply_once(client):
    client.counter("task-hits").set(0)
    assert list(client.map("count", [{"counter": "task-hits", "times": 100}] * 4)) == [100] * 4
    assert client.counter("task-hits").get() == 400


def test_a_limit_bounds_tasks_running_at_once(client):
    client.set_limit("client-one", 1)
    assert list(client.map("sleep", [0.05] * 4, uses=["client-one"])) == [0.05] * 4
    [limit] = [l for l in client.limits() if l.name == "client-one"]
    assert (limit.size, limit.high_water, limit.in_use) == (1, 1, 0)


def test_dependencies_by_future(client):
    first = client.submit("echo", "a")
    second = client.submit("echo", "b")
    assert client.submit("collect", None, after=[first, second]).result(timeout=30) == ["a", "b"]


def test_cancel_a_queued_task(client):
    client.set_limit("client-zero", 1)
    blocker = client.submit("sleep", 2, uses=["client-zero"])
    queued = client.submit("echo", 1, uses=["client-zero"])
    assert queued.cancel()
    assert queued.cancelled()
    client.cancel([blocker])
    with pytest.raises(colony.TaskFailed) as failure:
        blocker.result(timeout=30)
    assert failure.value.kind is colony.FailureKind.CANCELLED


def test_status_lists_the_node(client):
    status = client.status()
    [node] = status.nodes
    assert node.name == "swift" and node.thread_slots == 2 and "primes" in node.handlers
    assert client.status(figures=True).uptime_seconds > 0


def test_the_asyncio_flavour(swift_cluster):
    async def main():
        async with colony.AsyncColony(swift_cluster.url) as c:
            squares = await c.map("echo", list(range(20)), chunksize=7)
            primes = await (await c.submit("primes", {"lo": 0, "hi": 1000}))
            done = [await f for f in asyncio.as_completed([await c.submit("echo", i) for i in range(5)])]
            hits = await c.counter("async-hits").add(3)
            return squares, primes, sorted(done), hits
    squares, primes, done, hits = asyncio.run(main())
    assert squares == list(range(20)) and primes == 168 and done == [0, 1, 2, 3, 4] and hits >= 3
