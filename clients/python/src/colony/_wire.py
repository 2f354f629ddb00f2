"""One connection to a coordinator: a REQ socket, a pool of nng contexts (one request in
flight per context), envelopes in and out, refusals turned into exceptions."""
import queue
import threading
import time

import pynng

from . import colony_pb2 as pb
from .errors import Closed, NotFound, ProtocolViolation, Refused, TimedOut, Unavailable, Unreachable, BadInput

PROTOCOL_VERSION = 1
MESSAGE_BYTES_MAX = 16 << 20
SCHEMES = ("tcp://", "tcp4://", "tcp6://", "ipc://", "inproc://", "tls+tcp://", "ws://", "wss://")


def check_url(url):
    if not isinstance(url, str) or not url.startswith(SCHEMES):
        raise Unreachable(f"invalid URL '{url}': expected SCHEME://ADDRESS, e.g. tcp://127.0.0.1:7411 or ipc:///tmp/colony.sock")


def encode(body_name, body, token=""):
    envelope = pb.Envelope(version=PROTOCOL_VERSION, token=token)
    getattr(envelope, body_name).CopyFrom(body)
    return envelope.SerializeToString()


def decode(data, url):
    envelope = pb.Envelope()
    try:
        envelope.ParseFromString(data)
    except Exception:
        raise ProtocolViolation(f"protocol error: reply from {url} is not a colony.v1 envelope ({len(data)} bytes)") from None
    return envelope


class _Context(pynng.Context):
    """A context whose finalizer stays quiet when its socket was closed first (a client never
    closed, collected at interpreter exit)."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def describe(error, url):
    """A one-line Colony error for an nng failure."""
    if isinstance(error, pynng.ConnectionRefused):
        return Unreachable(f"nothing listening at {url} (connection refused)")
    if isinstance(error, pynng.Closed):
        return Closed("the client is closed")
    if isinstance(error, (pynng.AddressInvalid, pynng.InvalidOperation, pynng.NotSupported)):
        return Unreachable(f"invalid URL '{url}': {error}")
    return Unreachable(f"cannot reach {url}: {error}")


class Connection:
    """Requests over one REQ socket, up to `contexts` in flight at once.

    `request` waits up to `patience` seconds for a reply. nng resends a request whose reply
    did not come (a lost connection, a restarted coordinator); Colony makes that harmless with
    idempotency keys and acknowledged fetches. A reply of CODE_UNAVAILABLE is asked again every
    250 ms within the same patience."""

    def __init__(self, url, token="", patience=60.0, contexts=8, recv_timeout_ms=None, dial_block=True, resend_ms=None):
        check_url(url)
        self.url = url
        self.token = token or ""
        self.patience = float(patience)
        self._closed = False
        self._lock = threading.Lock()
        self._open = 0
        self._limit = contexts
        self._idle = queue.LifoQueue()
        self._contexts = []
        try:
            options = {"recv_max_size": MESSAGE_BYTES_MAX + (1 << 20), "reconnect_time_min": 50, "reconnect_time_max": 2000}
            if resend_ms is not None:
                options["resend_time"] = resend_ms
            self.socket = pynng.Req0(**options)
            # Contexts take the socket's timeout when they are opened.
            self.socket.recv_timeout = int(recv_timeout_ms if recv_timeout_ms is not None else self.patience * 1000)
            self.socket.send_timeout = int(self.patience * 1000)
            self.socket.dial(url, block=dial_block)
        except pynng.NNGException as error:
            try:
                self.socket.close()
            except Exception:
                pass
            raise describe(error, url) from None

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            contexts, self._contexts = self._contexts, []
        # Requests in flight (at most a long poll) end with Closed as their context closes.
        for context in contexts:
            try:
                context.close()
            except pynng.NNGException:
                pass
        self.socket.close()

    @property
    def closed(self):
        return self._closed

    def _acquire(self):
        with self._lock:
            if self._closed:
                raise Closed("the client is closed")
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            if self._open < self._limit:
                self._open += 1
                context = _Context(self.socket)
                self._contexts.append(context)
                return context
        return self._idle.get()

    def _release(self, context):
        self._idle.put(context)

    def exchange(self, body_name, body, context=None):
        """One request, one reply body (name, message); refusals raise."""
        data = encode(body_name, body, self.token)
        if len(data) > MESSAGE_BYTES_MAX:
            raise BadInput(f"bad input: a request of {len(data)} bytes exceeds the 16 MiB message limit; "
                           "make the input smaller (pass a path or a URL instead of the data)")
        own = context is None
        if own:
            context = self._acquire()
        try:
            try:
                context.send(data)
                reply = context.recv()
            except pynng.Timeout:
                raise TimedOut(f"no reply from the coordinator at {self.url} within {self.patience:g} s (the client's patience)") from None
            except pynng.NNGException as error:
                if self._closed:
                    raise Closed("the client is closed") from None
                raise describe(error, self.url) from None
            except (TypeError, AttributeError):
                # pynng's context object after close() was called from another thread.
                if self._closed:
                    raise Closed("the client is closed") from None
                raise
        finally:
            if own:
                self._release(context)
        envelope = decode(reply, self.url)
        kind = envelope.WhichOneof("body")
        if kind == "error":
            code, message = envelope.error.code, envelope.error.message
            if code == pb.ErrorReply.CODE_UNAVAILABLE:
                raise Unavailable(f"coordinator refused the request for now: {message}", code)
            if code == pb.ErrorReply.CODE_NOT_FOUND:
                raise NotFound(message, code)
            raise Refused(f"coordinator refused the request: {message}", code)
        if kind is None:
            raise ProtocolViolation(f"protocol error: empty reply from {self.url}")
        return kind, getattr(envelope, kind)

    def request(self, body_name, body, expect, patience=None):
        """`exchange`, asking again while the coordinator answers UNAVAILABLE."""
        deadline = time.monotonic() + (self.patience if patience is None else patience)
        while True:
            try:
                kind, reply = self.exchange(body_name, body)
            except Unavailable:
                if time.monotonic() + 0.25 >= deadline or self._closed:
                    raise
                time.sleep(0.25)
                continue
            if kind != expect:
                raise ProtocolViolation(f"protocol error: the coordinator answered a {body_name} request with {kind}")
            return reply
