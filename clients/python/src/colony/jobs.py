"""Jobs from Python: every submit belongs to a job (a new one, or the one `job=` names), and a
job's counts, results (in input order, kept by the coordinator whatever becomes of the client
that submitted them), cancel and forget, as `colony job ...` has them."""
import enum
import time
from dataclasses import dataclass

from . import colony_pb2 as pb
from .errors import BadInput, FailureKind

RESULTS_PER_READ = 1024
WAIT_MS = 1000


class JobState(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def of(cls, wire):
        return {pb.JOB_STATE_SUCCEEDED: cls.SUCCEEDED, pb.JOB_STATE_FAILED: cls.FAILED,
                pb.JOB_STATE_CANCELLED: cls.CANCELLED}.get(wire, cls.RUNNING)


@dataclass(frozen=True)
class JobFailure:
    task_id: int
    index: int
    error: str
    kind: FailureKind


@dataclass(frozen=True)
class Job:
    """A job's counts by phase, its times (seconds) and, from `job()` and `job_wait()`, its first
    failures in input order."""
    id: int
    name: str
    detached: bool
    state: JobState
    waiting: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    age_seconds: float
    elapsed_seconds: float
    failures: tuple

    @property
    def total(self):
        return self.waiting + self.queued + self.running + self.finished

    @property
    def finished(self):
        return self.succeeded + self.failed + self.cancelled

    @classmethod
    def from_wire(cls, wire):
        failures = tuple(JobFailure(f.task_id, f.index, f.error, FailureKind.of(f.reason)) for f in wire.failures)
        return cls(wire.id, wire.name, wire.detached, JobState.of(wire.state), wire.waiting, wire.queued, wire.running,
                   wire.succeeded, wire.failed, wire.cancelled, wire.age_seconds, wire.elapsed_seconds, failures)


def job_reference(job):
    """A job as the protocol names it: its id (an int, or a string of digits) or its name."""
    if isinstance(job, bool) or not isinstance(job, (int, str)) or job == "" or (isinstance(job, int) and job <= 0):
        raise BadInput(f"bad input: a job is an id (an integer above 0) or a name (a non-empty string), not {job!r}")
    return str(job)


def submit_target(request, job):
    """Sets the job a SubmitRequest joins: an id (int) or a name (str); None: a new job."""
    if job is None:
        return
    job_reference(job)
    if isinstance(job, int) or job.isdigit():
        request.job_id = int(job)
    else:
        request.job_name = job


class JobsMixin:
    """The job methods of `Colony` (they use its connection)."""

    def _job_request(self, op, job="", **fields):
        return self._connection.request("job", pb.JobRequest(op=op, job=job, **fields), "job_reply")

    def jobs(self, limit=1000):
        """The newest jobs (at most `limit`)."""
        return [Job.from_wire(wire) for wire in self._job_request(pb.JobRequest.OP_LIST, max_results=limit).jobs]

    def job(self, job):
        """One job by id or name, with its first failures; NotFound if it is not known."""
        return Job.from_wire(self._job_request(pb.JobRequest.OP_STATUS, job_reference(job)).jobs[0])

    def job_wait(self, job, timeout=None):
        """Waits until every task of the job has finished; returns the job (TimeoutError after
        `timeout` seconds)."""
        reference = job_reference(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left_ms = WAIT_MS if deadline is None else max(0, min(WAIT_MS, int((deadline - time.monotonic()) * 1000)))
            found = Job.from_wire(self._job_request(pb.JobRequest.OP_WAIT, reference, wait_ms=left_ms).jobs[0])
            if found.state is not JobState.RUNNING:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {reference} has not ended after {timeout} s")

    def job_results(self, job, start=0):
        """The job's results (`Result`) in input order from position `start`, each as soon as it
        and all before it have finished; ends after the last task. Reading takes nothing away."""
        from .client import Result
        reference = job_reference(job)
        position = start
        while True:
            reply = self._job_request(pb.JobRequest.OP_RESULTS, reference, **{"from": position}, max_results=RESULTS_PER_READ,
                                      wait_ms=WAIT_MS)
            for wire in reply.results:
                yield Result.from_wire(wire)
            position = reply.next
            if reply.ended and position >= reply.total:
                return

    def job_cancel(self, job):
        """Cancels the job's unfinished tasks; returns how many."""
        return self._job_request(pb.JobRequest.OP_CANCEL, job_reference(job)).cancelled

    def job_forget(self, job):
        """Forgets an ended job (Refused while tasks of it run: cancel it first)."""
        self._job_request(pb.JobRequest.OP_FORGET, job_reference(job))
