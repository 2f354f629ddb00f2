"""Jobs from Python against a real coordinator and a Swift node: every submit joins a job,
a named job collects several submits, results come back in input order from any client, and
unknown jobs and bad references are refused in one line."""
import pytest

import colony


def test_a_map_is_one_job_whose_results_any_client_reads_in_order(client, swift_cluster):
    futures = client.map_futures("echo", list(range(300)))
    job_id = futures[0].job_id
    assert job_id > 0 and all(f.job_id == job_id for f in futures)
    with colony.Colony(swift_cluster.url) as other:
        done = other.job_wait(job_id, timeout=60)
        assert done.state is colony.JobState.SUCCEEDED and done.succeeded == 300 and done.total == 300
        outputs = [result.value() for result in other.job_results(job_id)]
    assert outputs == list(range(300))
    assert [f.result(timeout=30) for f in futures] == list(range(300))


def test_a_named_job_collects_several_submits_and_counts_failures(client):
    first = client.submit("echo", "a", job="py-nightly")
    second = client.submit("fail", "boom", job="py-nightly")
    assert first.job_id == second.job_id > 0
    done = client.job_wait("py-nightly", timeout=60)
    assert done.name == "py-nightly" and done.state is colony.JobState.FAILED
    assert (done.succeeded, done.failed) == (1, 1)
    assert [f.error for f in done.failures] == ["boom"] and done.failures[0].index == 1
    assert done.id in [job.id for job in client.jobs()]
    client.job_forget("py-nightly")
    with pytest.raises(colony.NotFound):
        client.job("py-nightly")


def test_cancel_stops_a_jobs_unfinished_tasks(client):
    futures = client.map_futures("sleep", [30, 30, 30, 30], job="py-cancel")
    assert client.job_cancel("py-cancel") == 4
    done = client.job_wait("py-cancel", timeout=30)
    assert done.state is colony.JobState.CANCELLED and done.cancelled == 4
    for future in futures:
        with pytest.raises(colony.TaskFailed):
            future.result(timeout=30)


def test_bad_job_references_are_refused_and_submit_nothing(client):
    before = client.status().submitted if hasattr(client.status(), "submitted") else None
    for bad in (0, -3, "", 1.5, True, None.__class__):
        with pytest.raises(colony.BadInput):
            client.submit("echo", 1, job=bad)
    with pytest.raises(colony.NotFound):
        client.submit("echo", 1, job=987654321)
    with pytest.raises(colony.NotFound) as unknown:
        client.job(987654321)
    assert "\n" not in str(unknown.value)
    if before is not None:
        assert client.status().submitted == before
