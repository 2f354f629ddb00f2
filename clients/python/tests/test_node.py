"""The Python node (tests/handlers.py) against a real coordinator, driven by Colony's Swift
CLI (`colony submit`, `colony map`) and by the Python client."""
import json

import pytest

import colony


def test_swift_submit_runs_a_python_handler(python_cluster):
    done = python_cluster.cli("submit", "square", "7", "--wait")
    assert (done.returncode, done.stdout.strip()) == (0, "49")


def test_swift_map_in_order_with_and_without_chunks(python_cluster):
    lines = "\n".join(str(i) for i in range(1, 201)) + "\n"
    expected = [str(i * i) for i in range(1, 201)]
    for extra in ([], ["--chunk-size", "16"]):
        done = python_cluster.cli("map", "--handler", "square", *extra, input=lines)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == expected


def test_a_python_exception_fails_the_task_with_its_message(python_cluster):
    done = python_cluster.cli("submit", "boom", '"now"', "--wait")
    assert done.returncode != 0
    assert "failed on python: boom: now" in done.stderr
    with colony.Colony(python_cluster.url) as client:
        with pytest.raises(colony.TaskFailed) as failure:
            client.submit("boom", "again").result(timeout=30)
    assert (failure.value.reason, failure.value.kind) == ("boom: again", colony.FailureKind.ERROR)


def test_an_unknown_handler_in_a_batch_fails_its_task(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        spec = client._spec("batch", b'{"handler":"nope","inputs":[1]}', 0, (), (), 0, None, None, None, None)
        _, [task_id] = client._submit_specs([spec])
        with pytest.raises(colony.TaskFailed) as failure:
            client.result(task_id, wait=5)
    assert "unknown handler 'nope' on node python" in failure.value.reason


def test_counter_changes_of_a_python_handler_apply_with_its_success(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        client.counter("py-hits").set(0)
        assert list(client.map("pycount", [{"counter": "py-hits", "times": 100}] * 4, chunksize=2)) == [100] * 4
        assert client.counter("py-hits").get() == 400


def test_dependencies_reach_a_python_handler(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        a, b = client.submit("square", 3), client.submit("square", 4)
        assert client.submit("deps", None, after=[a, b]).result(timeout=30) == [9, 16]


def test_a_python_task_past_its_timeout_fails_with_kind_timeout(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        with pytest.raises(colony.TaskFailed) as failure:
            client.submit("nap", 3, timeout=0.2).result(timeout=30)
    assert failure.value.kind is colony.FailureKind.TIMEOUT and failure.value.reason == "timed out after 0.2 s"


def test_many_tiny_tasks_through_a_python_node(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        assert list(client.map("square", range(3000))) == [i * i for i in range(3000)]


def test_drain_hands_back_and_leaves(python_cluster):
    node = python_cluster.python_node(name="leaver", threads=1)
    with colony.Colony(python_cluster.url) as client:
        client.set_limit("leaver-one", 1)
        done = python_cluster.cli("drain", "leaver", "--deadline", "5")
        assert done.returncode == 0, done.stderr
        assert node.wait(20) == 0
        python_cluster.wait_for_node("leaver", present=False)
        # The cluster carries on with the node that stayed.
        assert client.submit("square", 5).result(timeout=30) == 25


def test_the_process_pool_isolates_a_crash_and_replaces_the_child(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        first = client.submit("pid", None, pool="process").result(timeout=30)
        with pytest.raises(colony.TaskFailed) as failure:
            client.submit("die", None).result(timeout=30)  # "die" runs in the process pool by default
        assert (failure.value.kind, failure.value.reason) == (colony.FailureKind.CRASHED, "crashed: killed by signal 9")
        second = client.submit("pid", None, pool="process").result(timeout=30)
        assert first != second
        assert client.submit("pid", None, pool="thread").result(timeout=30) not in (first, second)
    done = python_cluster.cli("submit", "square", "6", "--pool", "process", "--wait")
    assert (done.returncode, done.stdout.strip()) == (0, "36")


def test_a_timeout_in_the_process_pool_kills_the_child(python_cluster):
    with colony.Colony(python_cluster.url) as client:
        before = client.submit("pid", None, pool="process").result(timeout=30)
        with pytest.raises(colony.TaskFailed) as failure:
            client.submit("nap", 30, pool="process", timeout=0.3).result(timeout=30)
        assert failure.value.kind is colony.FailureKind.TIMEOUT
        assert client.submit("pid", None, pool="process").result(timeout=30) != before
