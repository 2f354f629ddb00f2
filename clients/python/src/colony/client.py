"""Colony's Python client: concurrent.futures-style access to a Colony cluster."""
import concurrent.futures as cf
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

from . import colony_pb2 as pb
from ._wire import Connection
from .jobs import JobsMixin, submit_target
from .errors import (BadInput, BadOutput, Closed, ColonyError, FailureKind, TaskFailed, TimedOut, Unavailable, Unreachable,
                     UnknownTask)

# Tasks per submit message and their largest total input size: well under the coordinator's
# caps (100,000 tasks, 16 MiB), and small enough that several messages travel pipelined.
TASKS_PER_SUBMIT = 2000
SUBMIT_BYTES_MAX = 4 << 20
FETCH_RESULTS_MAX = 8192
FETCH_WAIT_MS = 1000
POOLS = {None: pb.POOL_DEFAULT, "automatic": pb.POOL_DEFAULT, "thread": pb.POOL_THREAD, "process": pb.POOL_PROCESS}


@dataclass(frozen=True)
class Result:
    """One task's final result: `ok` with `output` (raw bytes), or `error` and `kind`."""
    task_id: int
    ok: bool
    output: bytes
    error: str
    kind: FailureKind
    node: str
    attempt: int
    run_micros: int
    cancelled: bool

    @classmethod
    def from_wire(cls, wire):
        return cls(wire.id, wire.ok, bytes(wire.output), wire.error, FailureKind.UNSPECIFIED if wire.ok else FailureKind.of(wire.failure),
                   wire.node, wire.attempt, wire.run_micros, wire.cancelled)

    def failure(self):
        return TaskFailed(self.task_id, self.error, FailureKind.CANCELLED if self.cancelled else self.kind, self.node)

    def value(self, raw=False):
        """The output (JSON-decoded unless raw); raises TaskFailed for a failed task."""
        if not self.ok:
            raise self.failure()
        if raw:
            return self.output
        return decode_output(self.task_id, self.output)


def decode_output(task_id, output):
    if not output:
        return None
    try:
        return json.loads(output)
    except ValueError as error:
        raise BadOutput(f"task {task_id} returned an unexpected output: not JSON ({error})") from None


def encode_input(value, raw):
    if raw:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise BadInput(f"bad input: raw=True takes bytes, not {type(value).__name__}")
        return bytes(value)
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise BadInput(f"bad input: cannot encode {type(value).__name__} as JSON: {error}") from None


class TaskFuture(cf.Future):
    """A concurrent.futures.Future for one task; `task_id` is its id at the coordinator.
    `cancel()` cancels the task in the cluster too. `job_id`: the job it belongs to."""

    def __init__(self, client, task_id, raw=False, unpack=None):
        super().__init__()
        self.task_id = task_id
        self.job_id = 0
        self._client = client
        self._raw = raw
        self._unpack = unpack

    def cancel(self):
        # Cancelled here first, so that the cancelled result racing back does not settle it.
        if not super().cancel():
            return False
        try:
            self._client.cancel([self.task_id])
        except ColonyError:
            pass  # the future is cancelled either way; the task may still run
        return True

    def _settle(self, result):
        if self.done():
            return
        try:
            if self._unpack is not None:
                value = self._unpack(result)
            else:
                value = result.value(self._raw)
        except ColonyError as error:
            self._set(exception=error)
        else:
            self._set(result=value)

    def _set(self, result=None, exception=None):
        try:
            if exception is not None:
                self.set_exception(exception)
            else:
                self.set_result(result)
        except cf.InvalidStateError:
            pass  # cancelled meanwhile


class Counter:
    """A cluster counter: every operation is one request, applied atomically by the
    coordinator; changes carry keys, so a resent request is applied once."""

    def __init__(self, client, name):
        self._client = client
        self.name = name

    def get(self):
        return self._client._counter(pb.CounterRequest.OP_GET, self.name).value

    def add(self, delta=1):
        """Adds `delta`; returns the new value."""
        return self._client._counter(pb.CounterRequest.OP_ADD, self.name, value=delta).value

    def set(self, value):
        """Sets the value; returns the previous one."""
        return self._client._counter(pb.CounterRequest.OP_SET, self.name, value=value).value

    def compare_and_set(self, expected, new):
        """Sets `new` only if the value is `expected`; returns whether it did."""
        return self._client._counter(pb.CounterRequest.OP_COMPARE_AND_SET, self.name, value=new, expected=expected).swapped


@dataclass(frozen=True)
class Limit:
    name: str
    size: int
    in_use: int
    high_water: int


@dataclass(frozen=True)
class NodeState:
    name: str
    host: str
    thread_slots: int
    process_slots: int
    handlers: list
    labels: dict
    draining: bool
    running: int
    completed: int
    failed: int
    last_seen_ms_ago: int


@dataclass(frozen=True)
class Status:
    """The cluster as the coordinator sees it (`raw`: the StatusReply itself)."""
    nodes: list
    queued: int
    running: int
    waiting: int
    succeeded: int
    failed: int
    cancelled: int
    retried: int
    unplaceable: int
    results_waiting: int
    limits: list
    journal_failure: str
    uptime_seconds: float
    raw: object = field(repr=False)

    @classmethod
    def from_wire(cls, wire):
        nodes = [NodeState(n.info.name, n.info.host, n.info.thread_slots, n.info.process_slots, list(n.info.handlers),
                           dict(n.info.labels), n.info.draining, n.running, n.completed, n.failed, n.last_seen_ms_ago)
                 for n in wire.nodes]
        return cls(nodes, wire.queued, wire.running, wire.waiting, wire.succeeded, wire.failed, wire.cancelled, wire.retried,
                   wire.unplaceable, wire.results_waiting, [Limit(l.name, l.size, l.in_use, l.high_water) for l in wire.limits],
                   wire.journal_failure, wire.uptime_seconds, wire)


class Colony(JobsMixin):
    """A connection to a Colony coordinator, used like a concurrent.futures executor whose
    functions are handlers registered on the cluster's nodes.

        with Colony("tcp://127.0.0.1:7411") as colony:
            print(colony.submit("primes", {"lo": 0, "hi": 100000}).result())   # 9592
            print(list(colony.map("echo", range(10), chunksize=5)))

    Inputs and outputs are JSON (pass raw=True for bytes). Results come back in batches
    through one long-polling fetch per client, acknowledged so that none is lost.
    `patience` bounds every wait for a coordinator that does not answer (seconds)."""

    def __init__(self, url="tcp://127.0.0.1:7411", token="", patience=60.0, concurrent_requests=8):
        self.url = url
        self.session = str(uuid.uuid4())
        self.patience = float(patience)
        self._connection = Connection(url, token=token, patience=patience, contexts=concurrent_requests)
        self._lock = threading.Condition()
        self._waiting = {}      # task id -> [callback(Result)]
        self._arrived = {}      # results that came before anyone waited for them
        self._unacked = []
        self._generation = 0
        self._keys = 0
        self._runs = 0
        self._closed = False
        self._senders = cf.ThreadPoolExecutor(max_workers=max(1, concurrent_requests // 2), thread_name_prefix="colony-submit")
        self._pump = threading.Thread(target=self._pump_loop, name="colony-fetch", daemon=True)
        self._pump.start()

    # -- lifetime ---------------------------------------------------------------------------

    def close(self):
        """Fails every wait with Closed, acknowledges what arrived, closes the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting, self._waiting = self._waiting, {}
            unacked, self._unacked = self._unacked, []
            self._lock.notify_all()
        for callbacks in waiting.values():
            for callback in callbacks:
                callback(Closed("the client is closed"))
        if unacked:
            try:
                self._connection.request("fetch", pb.FetchRequest(session=self.session, acked=unacked), "fetch_reply", patience=2)
            except ColonyError:
                pass  # the coordinator sends them again to nobody; they expire
        self._senders.shutdown(wait=False)
        self._connection.close()
        self._pump.join(timeout=3)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- submitting -------------------------------------------------------------------------

    def submit(self, handler, input=None, *, raw=False, priority=0, uses=(), after=(), retries=0, timeout=None,
               labels=None, pool=None, key=None, job=None):
        """Queues one task; returns a TaskFuture whose result is the handler's output.

        priority: higher first. uses: names of cluster limits held while it runs. after: tasks
        (futures or ids) that must succeed first. retries: attempts after a failure. timeout:
        seconds per attempt. labels: what a node must offer. pool: "thread" or "process".
        key: idempotency key (default: SESSION#N). job: the job it joins, by id (int) or name
        (made if new; default: a new job); the future's `job_id` says which."""
        spec = self._spec(handler, encode_input(input, raw), priority, uses, after, retries, timeout, labels, pool, key)
        job_id, ids = self._submit_specs([spec], job)
        future = TaskFuture(self, ids[0], raw)
        future.job_id = job_id
        self._wait_for(future.task_id, future)
        return future

    def run(self, handler, input=None, *, raw=False, timeout=None):
        """Runs one task and returns its output: submit-and-wait in one round trip when the task
        is quick (the coordinator holds the submit's reply until the result is in)."""
        with self._lock:
            self._runs += 1
            session = f"{self.session}/run-{self._runs}"
        spec = self._spec(handler, encode_input(input, raw), 0, (), (), 0, timeout, None, None, session)
        reply = self._connection.request("submit", pb.SubmitRequest(session=session, tasks=[spec], wait_ms=2000), "submit_reply")
        if len(reply.task_ids) != 1:
            raise ColonyError(f"protocol error: the coordinator answered a submit of 1 task with {len(reply.task_ids)} ids")
        task_id = reply.task_ids[0]
        while not reply.results:
            reply = self._connection.request("fetch", pb.FetchRequest(session=session, max_results=1, wait_ms=FETCH_WAIT_MS), "fetch_reply")
            if not reply.results and reply.pending == 0:
                raise UnknownTask(task_id)
        result = Result.from_wire(reply.results[0])
        # The coordinator forgets the result once acknowledged: off the caller's path.
        acknowledgement = pb.FetchRequest(session=session, acked=[result.task_id])
        try:
            self._senders.submit(self._acknowledge, acknowledgement)
        except RuntimeError:
            pass  # closing: the result expires with its TTL
        return result.value(raw)

    def _acknowledge(self, request):
        try:
            self._connection.request("fetch", request, "fetch_reply", patience=2)
        except ColonyError:
            pass

    def map(self, handler, inputs, *, chunksize=1, timeout=None, raw=False, **options):
        """Runs `handler` over every input; returns an iterator over the outputs in input order
        (like Executor.map: every task is submitted at once, and a failed input raises
        TaskFailed when the iterator reaches it). With chunksize K > 1, K inputs travel in one
        task (the node's `batch` handler); outputs and failures stay per input.
        `timeout`: seconds for the whole map (TimeoutError); other options as `submit`."""
        futures, sizes = self._submit_map(handler, list(inputs), chunksize, raw, options)
        deadline = None if timeout is None else time.monotonic() + timeout

        def outputs():
            try:
                for future, size in zip(futures, sizes):
                    left = None if deadline is None else max(0, deadline - time.monotonic())
                    value = future.result(left)
                    if size is None:
                        yield value
                    else:
                        for entry in value:
                            if isinstance(entry, ColonyError):
                                raise entry
                            yield entry
            finally:
                for future in futures:
                    if not future.done():
                        future.cancel()
        return outputs()

    def map_futures(self, handler, inputs, *, raw=False, **options):
        """One TaskFuture per input, in order (for as_completed)."""
        futures, _ = self._submit_map(handler, list(inputs), 1, raw, options)
        return futures

    def _submit_map(self, handler, inputs, chunksize, raw, options):
        if not isinstance(chunksize, int) or chunksize < 1:
            raise BadInput(f"bad input: chunksize must be an integer >= 1, not {chunksize!r}")
        job = options.pop("job", None)
        option_args = self._options(**options)
        encoded = [encode_input(value, raw) for value in inputs]
        if chunksize == 1:
            specs = [self._spec(handler, data, *option_args) for data in encoded]
            job_id, ids = self._submit_specs(specs, job)
            futures = [TaskFuture(self, task_id, raw) for task_id in ids]
            for future in futures:
                future.job_id = job_id
                self._wait_for(future.task_id, future)
            return futures, [None] * len(futures)
        if raw:
            raise BadInput("bad input: chunksize > 1 takes JSON inputs, not raw=True")
        name = json.dumps(handler).encode()
        specs, sizes = [], []
        for start in range(0, len(encoded), chunksize):
            chunk = encoded[start:start + chunksize]
            body = b'{"handler":' + name + b',"inputs":[' + b",".join(chunk) + b"]}"
            spec = self._spec("batch", body, *option_args)
            spec.pool_handler = handler
            specs.append(spec)
            sizes.append(len(chunk))
        job_id, ids = self._submit_specs(specs, job)
        futures = []
        for task_id, size in zip(ids, sizes):
            future = TaskFuture(self, task_id, unpack=lambda result, size=size: unpack_batch(result, size))
            future.job_id = job_id
            self._wait_for(task_id, future)
            futures.append(future)
        return futures, sizes

    @staticmethod
    def _options(priority=0, uses=(), after=(), retries=0, timeout=None, labels=None, pool=None):
        return (priority, uses, after, retries, timeout, labels, pool, None)

    def _spec(self, handler, data, priority, uses, after, retries, timeout, labels, pool, key):
        if not isinstance(handler, str) or not handler:
            raise BadInput("bad input: a handler name is a non-empty string")
        if pool not in POOLS:
            raise BadInput(f"bad input: pool must be 'thread', 'process' or None, not {pool!r}")
        if not isinstance(retries, int) or not 0 <= retries <= 999:
            raise BadInput(f"bad input: retries must be 0 to 999, not {retries!r}")
        spec = pb.TaskSpec(handler=handler, input=data, priority=int(priority), pool=POOLS[pool])
        spec.uses.extend([uses] if isinstance(uses, str) else list(uses))
        spec.after.extend(f.task_id if isinstance(f, TaskFuture) else int(f) for f in after)
        if retries:
            spec.max_attempts = retries + 1
            spec.retry_on_error = True
        if timeout is not None:
            if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0.001 <= timeout <= 2_592_000):
                raise BadInput(f"bad input: timeout must be a number of seconds from 0.001 to 2592000, not {timeout!r}")
            spec.timeout_ms = round(timeout * 1000)
        if labels:
            spec.labels.update({str(k): str(v) for k, v in labels.items()})
        if key is None:
            with self._lock:
                self._keys += 1
                key = f"{self.session}#{self._keys}"
        spec.key = key
        return spec

    def _submit_specs(self, specs, job=None):
        """Submits in messages of at most TASKS_PER_SUBMIT tasks / SUBMIT_BYTES_MAX bytes into
        `job` (None: a new one), the first alone and the rest in parallel joining the job it
        made; returns the job's id and the ids in order."""
        first = pb.SubmitRequest(session=self.session)
        submit_target(first, job)
        chunks, start, size = [], 0, 0
        for index, spec in enumerate(specs):
            spec_size = len(spec.input) + len(spec.handler) + 64
            if index > start and (index - start == TASKS_PER_SUBMIT or size + spec_size > SUBMIT_BYTES_MAX):
                chunks.append(specs[start:index])
                start, size = index, 0
            size += spec_size
        chunks.append(specs[start:])

        def send(chunk, request):
            request.tasks.extend(chunk)
            reply = self._connection.request("submit", request, "submit_reply")
            if len(reply.task_ids) != len(chunk):
                raise ColonyError(f"protocol error: the coordinator answered a submit of {len(chunk)} tasks with {len(reply.task_ids)} ids")
            return reply.job_id, list(reply.task_ids)

        if self._closed:
            raise Closed("the client is closed")
        job_id, ids = send(chunks[0], first)
        if len(chunks) > 1:
            rest = self._senders.map(lambda chunk: send(chunk, pb.SubmitRequest(session=self.session, job_id=job_id))[1], chunks[1:])
            ids += [task_id for part in rest for task_id in part]
        with self._lock:
            self._generation += 1
        return job_id, ids

    # -- results ----------------------------------------------------------------------------

    def _wait_for(self, task_id, future):
        def callback(outcome):
            if isinstance(outcome, ColonyError):
                future._set(exception=outcome)
            else:
                future._settle(outcome)
        with self._lock:
            if self._closed:
                future._set(exception=Closed("the client is closed"))
                return
            arrived = self._arrived.pop(task_id, None)
            if arrived is None:
                self._waiting.setdefault(task_id, []).append(callback)
                self._lock.notify_all()
                return
        callback(arrived)

    def _pump_loop(self):
        """Fetches this session's results while anyone waits (long poll), acknowledging each
        batch with the next fetch, and hands them to the futures."""
        failures, since = 0, None
        while True:
            with self._lock:
                while not self._closed and not self._waiting and not self._unacked:
                    self._lock.wait()
                if self._closed:
                    return
                fetching = bool(self._waiting)
                acked = list(self._unacked)
                generation = self._generation
            request = pb.FetchRequest(session=self.session, acked=acked)
            if fetching:
                request.max_results = FETCH_RESULTS_MAX
                request.wait_ms = FETCH_WAIT_MS
            started = time.monotonic()
            try:
                reply = self._connection.request("fetch", request, "fetch_reply")
            except Closed:
                return
            except ColonyError as error:
                failures += 1
                since = since or started
                transient = isinstance(error, (Unreachable, TimedOut, Unavailable))
                if (time.monotonic() - since >= self.patience) if transient else failures >= 3:
                    self._fail_all(error)
                    failures, since = 0, None
                time.sleep(min(0.25, 0.05 * failures))
                continue
            failures, since = 0, None
            results = [Result.from_wire(wire) for wire in reply.results]
            deliveries = []
            with self._lock:
                # Acknowledged now: the coordinator forgot them.
                del self._unacked[:len(acked)]
                self._unacked.extend(result.task_id for result in results)
                for result in results:
                    callbacks = self._waiting.pop(result.task_id, None)
                    if callbacks:
                        deliveries.extend((callback, result) for callback in callbacks)
                    else:
                        self._arrived[result.task_id] = result
                if fetching and not results and reply.pending == 0 and generation == self._generation:
                    # Nothing of ours is unfinished: whoever still waits waits for a task this
                    # session will never see.
                    for task_id, callbacks in self._waiting.items():
                        deliveries.extend((callback, UnknownTask(task_id)) for callback in callbacks)
                    self._waiting = {}
            for callback, outcome in deliveries:
                callback(outcome)
            if results and len(results) < 64 and reply.pending > 0:
                time.sleep(0.001)  # let a few more gather: a fetch per batch, not per result

    def _fail_all(self, error):
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for callbacks in waiting.values():
            for callback in callbacks:
                callback(error)

    def result(self, task_id, wait=0.0, raw=False):
        """The output of any task by id (whoever submitted it), waiting up to `wait` seconds
        (at most 5) for it to finish; raises TimeoutError if it has not. Handed out once."""
        reply = self._connection.request("result", pb.ResultRequest(task_id=task_id, wait_ms=int(min(wait, 5) * 1000)), "fetch_reply")
        if not reply.results:
            raise TimeoutError(f"task {task_id} has not finished")
        return Result.from_wire(reply.results[0]).value(raw)

    # -- the cluster ------------------------------------------------------------------------

    def status(self, figures=False):
        """The cluster now (with figures: throughput, latency percentiles, uptime, in `raw`)."""
        return Status.from_wire(self._connection.request("status", pb.StatusRequest(figures=figures), "status_reply"))

    def counter(self, name):
        """A cluster counter: `colony.counter("hits").add(1)`."""
        return Counter(self, name)

    def counters(self):
        """Every counter, by name."""
        reply = self._counter(pb.CounterRequest.OP_LIST, "")
        return {entry.name: entry.value for entry in reply.counters}

    def _counter(self, op, name, value=0, expected=0):
        request = pb.CounterRequest(op=op, name=name, value=value, expected=expected)
        if op not in (pb.CounterRequest.OP_GET, pb.CounterRequest.OP_LIST):
            with self._lock:
                self._keys += 1
                request.key = f"{self.session}#c{self._keys}"
        return self._connection.request("counter", request, "counter_reply")

    def set_limit(self, name, size):
        """Creates or resizes a cluster limit: at most `size` tasks that use it run at once."""
        reply = self._connection.request("limit", pb.LimitRequest(name=name, size=size), "limit_reply")
        return [Limit(l.name, l.size, l.in_use, l.high_water) for l in reply.limits]

    def limits(self):
        """Every limit with its size, use now, and the most ever used at once."""
        reply = self._connection.request("limit", pb.LimitRequest(list=True), "limit_reply")
        return [Limit(l.name, l.size, l.in_use, l.high_water) for l in reply.limits]

    def cancel(self, tasks):
        """Cancels tasks (futures or ids) and their dependents; returns how many."""
        ids = [t.task_id if isinstance(t, TaskFuture) else int(t) for t in tasks]
        return self._connection.request("cancel", pb.CancelRequest(task_ids=ids), "cancel_reply").cancelled

    def cancel_all(self):
        """Cancels every unfinished task this client submitted."""
        return self._connection.request("cancel", pb.CancelRequest(session=self.session), "cancel_reply").cancelled

    def tasks(self, state="", limit=1000):
        """Tasks the coordinator knows (state: waiting, queued, running, succeeded, failed, cancelled)."""
        reply = self._connection.request("tasks", pb.TasksRequest(state=state or "", limit=limit), "tasks_reply")
        return [{"id": t.id, "handler": t.handler, "state": t.state, "attempt": t.attempt, "node": t.node,
                 "error": t.error, "priority": t.priority} for t in reply.tasks]

    def drain(self, node, deadline=30.0):
        """Asks node `node` to drain and leave; False if the coordinator does not know it."""
        return self._connection.request("drain", pb.DrainRequest(node=node, deadline_ms=int(deadline * 1000)), "drain_reply").found


def unpack_batch(result, size):
    """A batch task's output: one output (or TaskFailed) per input."""
    if not result.ok:
        raise result.failure()
    try:
        entries = json.loads(result.output)
    except ValueError:
        entries = None
    if not isinstance(entries, list) or len(entries) != size or not all(isinstance(e, dict) for e in entries):
        raise BadOutput(f"task {result.task_id} returned an unexpected output: not a batch of {size} entries")
    return [entry.get("output") if entry.get("ok") else TaskFailed(result.task_id, str(entry.get("error", "")), FailureKind.ERROR, result.node)
            for entry in entries]


as_completed = cf.as_completed
wait = cf.wait
