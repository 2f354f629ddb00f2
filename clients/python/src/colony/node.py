"""A Colony node in Python: serve tasks from a cluster with Python functions.

    import colony.node

    def square(x):
        return x * x

    colony.node.run("tcp://127.0.0.1:7411", handlers={"square": square}, threads=4)

A handler takes the task's input (JSON-decoded) and returns its output (JSON-encoded); an
exception fails the task with `str(exception)`. `colony.node.current()` gives the running
task's id, attempt, dependency outputs and counters (changes applied with its success).

The node pulls with the same protocol as Colony's Swift node (docs/PROTOCOL.md): results
ride on pulls in batches, at most two pulls are in flight (one long poll, one delivering
results), lost replies are acknowledged by dispatch sequence, tiny tasks are prefetched,
and a drain (SIGTERM, `colony drain NAME`, or `Node.drain()`) hands back what is queued,
lets running tasks finish within the deadline, and leaves."""
import collections
import json
import os
import signal
import socket
import threading
import time

import pynng

from . import colony_pb2 as pb
from ._wire import Connection, describe
from .errors import ColonyError

OUTPUT_BYTES_MAX = 4 << 20
RESULTS_PER_PULL_MAX = 4096
RESULT_BYTES_PER_PULL_MAX = 8 << 20
RESULT_LINGER = 0.002
PREFETCH_MAX = 1024
PREFETCH_TARGET_MICROS = 5000.0
LONG_POLL_MS = 1000
REQUEST_TIMEOUT_MS = 15000
RETRY_DELAY = 0.25
# A prefetched task that has not started after this long is handed back with everything
# queued behind it, so that an idle node elsewhere runs it: prefetch guessed from short tasks
# must not strand long ones.
STRANDED_AFTER = 0.05
DRAIN_STOP_REASON = "handed back: node draining past its deadline"

_local = threading.local()


class TaskContext:
    """What a handler may know of its task, and the counter changes it makes."""

    def __init__(self, task):
        self.task_id = task.id
        self.attempt = task.attempt
        self._dependencies = task.dependencies
        self.counter_ops = []

    def dependency(self, task_id):
        """The output of dependency `task_id`, JSON-decoded."""
        data = self._dependencies[task_id]
        return json.loads(data) if data else None

    @property
    def dependencies(self):
        return {task_id: (json.loads(data) if data else None) for task_id, data in self._dependencies.items()}

    def counter(self, name):
        return _TaskCounter(self, name)


class _TaskCounter:
    def __init__(self, context, name):
        self._context = context
        self.name = name

    def add(self, delta=1):
        """Adds `delta` to the cluster counter, applied once, with the task's success."""
        self._context.counter_ops.append((self.name, int(delta)))


def current():
    """The task the calling handler runs (None outside a handler)."""
    return getattr(_local, "context", None)


class Node:
    """A worker node. `run()` pulls until drained (or `stop()`), `drain()` asks it to leave."""

    def __init__(self, url, handlers, threads=None, name=None, token="", labels=None, log=None):
        if not handlers or not all(isinstance(k, str) and callable(v) for k, v in handlers.items()):
            raise ValueError("handlers: a dict of name -> function")
        self.url = url
        self.handlers = dict(handlers)
        self.threads = max(1, int(threads or os.cpu_count() or 1))
        self.name = name or f"{socket.gethostname()}-py{os.getpid()}"
        self.labels = dict(labels or {})
        self.log = log or (lambda line: None)
        self._connection = Connection(url, token=token, contexts=2, recv_timeout_ms=LONG_POLL_MS + REQUEST_TIMEOUT_MS,
                                      dial_block=False, resend_ms=-1)
        self._contexts = [self._connection._acquire(), self._connection._acquire()]
        self._lock = threading.Condition()
        self._queue = collections.deque()     # (task, when it arrived): dispatched, waiting for a thread
        self._running = set()                 # ids held: queued, running or finished and unsent
        self._attempts = {}                   # id -> attempt, of the tasks held
        self._executing = 0
        self._pending = []                    # results not sent yet
        self._pending_since = None
        self._to_return = []
        self._stopped = {}                    # id -> (reason, kind): result replaced, later output dropped
        self._in_flight = 0
        self._highest_seq = 0
        self._average_micros = None
        self._backing_off_until = 0.0
        self._draining = False
        self._drain_deadline = None
        self._drained = False
        self._stopping = False
        self.succeeded = 0
        self.failed = 0
        self.failed_pulls = 0
        self.handed_back = 0
        self._names = sorted(set(self.handlers) | {"batch"})

    # -- control ------------------------------------------------------------------------------

    def drain(self, deadline=30.0):
        """Stops taking tasks: queued ones go back at once, running ones may finish within
        `deadline` seconds (then they are handed back); then the node leaves and run() returns."""
        with self._lock:
            if self._draining:
                return
            self._draining = True
            self._drain_deadline = time.monotonic() + deadline
            self.log(f"node {self.name} draining: {self._executing} task(s) running, deadline {deadline:g} s")
            self._hand_back_queued()
            self._lock.notify_all()

    def stop(self):
        """Stops at once, without handing anything back (the coordinator sees the node lost)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._connection.close()

    # -- the loop -------------------------------------------------------------------------------

    def run(self):
        workers = [threading.Thread(target=self._worker, name=f"colony-node-{i}", daemon=True) for i in range(self.threads)]
        for worker in workers:
            worker.start()
        self.log(f"node {self.name} pulling from {self.url} with {self.threads} thread slots")
        try:
            with self._lock:
                while not self._drained and not self._stopping:
                    now = time.monotonic()
                    if self._draining and self._drain_deadline is not None and now >= self._drain_deadline:
                        self._stop_remaining()
                    if self._queue and now - self._queue[0][1] >= STRANDED_AFTER:
                        self._hand_back_stranded(now)
                    plan = self._next_pull(now)
                    if plan is not None:
                        threading.Thread(target=self._perform, args=plan, daemon=True).start()
                        continue
                    self._lock.wait(self._next_wake(now))
        finally:
            with self._lock:
                self._stopping = True
                self._lock.notify_all()
            self._connection.close()

    def _next_wake(self, now):
        moments = [now + 1.0]
        if self._pending_since is not None:
            moments.append(self._pending_since + RESULT_LINGER)
        if self._backing_off_until > now:
            moments.append(self._backing_off_until)
        if self._draining and self._drain_deadline is not None:
            moments.append(self._drain_deadline)
        if self._queue:
            moments.append(self._queue[0][1] + STRANDED_AFTER)
        return max(0.0005, min(moments) - now)

    def _prefetch(self):
        if self._average_micros is None:
            return 0
        return min(PREFETCH_MAX, int(PREFETCH_TARGET_MICROS / max(self._average_micros, 1)) * self.threads)

    def _next_pull(self, now):
        """A pull to send now, or None: always one when none is in flight (the long poll), a
        second only to deliver results while the first is held."""
        if not self._contexts or now < self._backing_off_until or self._drained:
            return None
        if self._in_flight >= 1 and not self._pending and not self._to_return:
            return None
        if self._in_flight >= 1 and self._queue and self._pending_since is not None and now - self._pending_since < RESULT_LINGER:
            return None  # busy: let a few more results join this batch
        leaving = (self._draining and self._in_flight == 0 and self._executing == 0 and not self._queue
                   and len(self._pending) <= RESULTS_PER_PULL_MAX)
        context = self._contexts.pop()
        self._in_flight += 1
        results, size = [], 0
        for result in self._pending:
            item = len(result.output) + len(result.error) + 64
            if len(results) == RESULTS_PER_PULL_MAX or (results and size + item > RESULT_BYTES_PER_PULL_MAX):
                break
            results.append(result)
            size += item
        del self._pending[:len(results)]
        self._pending_since = now if self._pending else None
        pull = pb.PullRequest(wait_ms=0 if leaving else LONG_POLL_MS)
        info = pull.node
        info.name = self.name
        info.host = socket.gethostname()
        info.thread_slots = self.threads
        info.handlers.extend(self._names)
        info.pid = os.getpid()
        info.labels.update(self.labels)
        info.draining = self._draining
        pull.results.extend(results)
        pull.returned.extend(self._to_return)
        returned = list(self._to_return)
        self._to_return = []
        pull.leaving = leaving and not self._pending
        # Acknowledge only when no other pull is in flight: then every reply sent before has
        # been processed, and tasks up to it that the node does not hold were really lost.
        if self._in_flight == 1 and self._highest_seq > 0:
            pull.acked_dispatch_seq = self._highest_seq
            pull.running.extend(self._running)
        pull.prefetch = 0 if self._draining else self._prefetch()
        pull.figures.succeeded = self.succeeded
        pull.figures.failed = self.failed
        pull.figures.failed_pulls = self.failed_pulls
        return context, pull, results, returned, pull.leaving

    def _perform(self, context, pull, results, returned, leaving):
        try:
            kind, reply = self._connection.exchange("pull", pull, context=context)
            if kind != "pull_reply":
                raise ColonyError(f"coordinator answered a pull with {kind}")
        except (ColonyError, pynng.NNGException) as error:
            self._pull_failed(context, results, returned, error, leaving)
            return
        if reply.drain:
            self.drain(reply.drain_deadline_ms / 1000)
        with self._lock:
            self._highest_seq = max(self._highest_seq, reply.dispatch_seq)
            if leaving:
                self._drained = True
                self.log(f"node {self.name} drained and left")
            if reply.cancel:
                self._cancel(set(reply.cancel))
            arrived = time.monotonic()
            for task in reply.tasks:
                self._running.add(task.id)
                self._attempts[task.id] = task.attempt
                self._queue.append((task, arrived))
            if self._draining:
                self._hand_back_queued()
            self._contexts.append(context)
            self._in_flight -= 1
            self._lock.notify_all()

    def _pull_failed(self, context, results, returned, error, leaving):
        with self._lock:
            self._pending[0:0] = results
            self._to_return[0:0] = returned
            if self._pending and self._pending_since is None:
                self._pending_since = time.monotonic()
            self.failed_pulls += 1
            if self.failed_pulls == 1 or self.failed_pulls % 20 == 0:
                self.log(f"node {self.name}: pull failed: {error}; retrying")
            if leaving or self._stopping:
                # A goodbye that got no answer: the coordinator sees the node gone by itself.
                self._drained = self._drained or leaving
            self._backing_off_until = time.monotonic() + RETRY_DELAY
            self._contexts.append(context)
            self._in_flight -= 1
            self._lock.notify_all()

    def _cancel(self, ids):
        kept = collections.deque()
        for task, arrived in self._queue:
            if task.id in ids:
                self._pending.append(self._failure(task, "cancelled", pb.FAILURE_CANCELLED))
            else:
                kept.append((task, arrived))
        self._queue = kept
        for task_id in ids:
            if task_id in self._running and task_id not in self._stopped:
                # Running on a thread, which cannot be interrupted: reported cancelled now, its
                # output dropped when it returns.
                self._stopped[task_id] = ("cancelled", pb.FAILURE_CANCELLED)
                self._pending.append(self._failure_by_id(task_id, "cancelled", pb.FAILURE_CANCELLED))
        if self._pending and self._pending_since is None:
            self._pending_since = time.monotonic()

    def _hand_back_stranded(self, now):
        """The oldest queued task waited STRANDED_AFTER without a thread: longer tasks than the
        prefetch expected hold the threads. The average task time becomes at least that wait,
        so the node prefetches no more until short tasks bring it down again."""
        waited_micros = (now - self._queue[0][1]) * 1e6
        self._average_micros = max(self._average_micros or 0, waited_micros)
        self.handed_back += len(self._queue)
        self._hand_back_queued()

    def _hand_back_queued(self):
        while self._queue:
            task, _ = self._queue.popleft()
            self._running.discard(task.id)
            self._attempts.pop(task.id, None)
            self._to_return.append(task.id)

    def _stop_remaining(self):
        """At the drain deadline: what still runs goes back (its output will be dropped)."""
        self._drain_deadline = None
        for task_id in list(self._running):
            if task_id not in self._stopped:
                self._stopped[task_id] = (DRAIN_STOP_REASON, pb.FAILURE_CANCELLED)
                self._running.discard(task_id)
                self._to_return.append(task_id)
                self._executing -= 1
        self._lock.notify_all()

    # -- running tasks --------------------------------------------------------------------------

    def _failure(self, task, reason, kind):
        self._running.discard(task.id)
        self._attempts.pop(task.id, None)
        return pb.TaskResult(id=task.id, attempt=task.attempt, ok=False, error=reason, failure=kind, node=self.name)

    def _failure_by_id(self, task_id, reason, kind):
        attempt = self._attempts.get(task_id, 0)
        self._running.discard(task_id)
        return pb.TaskResult(id=task_id, attempt=attempt, ok=False, error=reason, failure=kind, node=self.name)

    def _worker(self):
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                task, _ = self._queue.popleft()
                self._executing += 1
            timer = None
            if task.timeout_ms:
                timer = threading.Timer(task.timeout_ms / 1000, self._timed_out, args=(task,))
                timer.daemon = True
                timer.start()
            result = self._execute(task)
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._attempts.pop(task.id, None)
                stopped = self._stopped.pop(task.id, None)
                if stopped is not None:
                    if stopped[0] != DRAIN_STOP_REASON:
                        self._executing -= 1
                    self._lock.notify_all()
                    continue  # reported already (cancelled, timed out, handed back)
                self._executing -= 1
                self._running.discard(task.id)
                sample = result.run_micros + 5
                self._average_micros = sample if self._average_micros is None else self._average_micros * 0.8 + sample * 0.2
                if result.ok:
                    self.succeeded += 1
                else:
                    self.failed += 1
                if not self._pending:
                    self._pending_since = time.monotonic()
                self._pending.append(result)
                self._lock.notify_all()

    def _timed_out(self, task):
        with self._lock:
            if task.id not in self._running or task.id in self._stopped:
                return
            seconds = task.timeout_ms / 1000
            reason = f"timed out after {seconds:g} s"
            self._stopped[task.id] = (reason, pb.FAILURE_TIMEOUT)
            self.failed += 1
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(self._failure(task, reason, pb.FAILURE_TIMEOUT))
            self._lock.notify_all()

    def _execute(self, task):
        result = pb.TaskResult(id=task.id, attempt=task.attempt, node=self.name)
        started = time.perf_counter()
        context = TaskContext(task)
        _local.context = context
        try:
            if task.handler == "batch":
                output = self._batch(task.input, context)
            else:
                handler = self.handlers.get(task.handler)
                if handler is None:
                    result.error = f"unknown handler '{task.handler}' on node {self.name} (it has: {', '.join(self._names)})"
                    result.failure = pb.FAILURE_UNKNOWN_HANDLER
                    return result
                output = _encode(handler(_decode(task.handler, task.input)))
            if len(output) > OUTPUT_BYTES_MAX:
                result.error = f"output of {len(output)} bytes exceeds the limit of {OUTPUT_BYTES_MAX} bytes"
                result.failure = pb.FAILURE_REFUSED
            else:
                result.ok = True
                result.output = output
                result.counter_ops.extend(pb.CounterOp(name=name, delta=delta) for name, delta in context.counter_ops)
        except Exception as error:  # a handler's failure is its task's, never the node's
            result.ok = False
            result.error = _one_line(error)
            result.failure = pb.FAILURE_ERROR
        finally:
            _local.context = None
            result.run_micros = int((time.perf_counter() - started) * 1e6)
        return result

    def _batch(self, data, context):
        """`batch`: {"handler": NAME, "inputs": [...]} -> one {"ok", "output" | "error"} per input."""
        try:
            batch = json.loads(data)
            name, inputs = batch["handler"], batch["inputs"]
            if set(batch) != {"handler", "inputs"} or not isinstance(inputs, list):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ValueError('batch takes {"handler": NAME, "inputs": [...]}') from None
        handler = self.handlers.get(name)
        if handler is None:
            raise ValueError(f"unknown handler '{name}' on node {self.name} (it has: {', '.join(self._names)})")
        entries = []
        for item in inputs:
            item_context = TaskContext(pb.Task(id=context.task_id, attempt=context.attempt))
            item_context._dependencies = context._dependencies
            _local.context = item_context
            try:
                entries.append({"ok": True, "output": handler(item)})
                context.counter_ops.extend(item_context.counter_ops)
            except Exception as error:
                entries.append({"ok": False, "error": _one_line(error)})
        _local.context = context
        return _encode(entries)


def _decode(handler, data):
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError as error:
        raise ValueError(f"bad input for handler '{handler}': not JSON ({error})") from None


def _encode(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _one_line(error):
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:65536]


def run(url, handlers, threads=None, name=None, token="", labels=None, log=None, drain_deadline=30.0):
    """Runs a node until it is drained (`colony drain NAME`, or SIGTERM / SIGINT when called
    from the main thread) and has left."""
    node = Node(url, handlers, threads=threads, name=name, token=token, labels=labels, log=log)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: node.drain(drain_deadline))
    node.run()
    return node
