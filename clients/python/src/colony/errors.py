"""Everything Colony's Python client and node raise. `str(error)` is one line for users;
programs decide on the exception's type and its `kind` / `code`, never on the text."""
import enum

from . import colony_pb2 as pb


class FailureKind(enum.Enum):
    """Why a task failed (the `reason` label of colony_tasks_failed_total)."""

    UNSPECIFIED = pb.FAILURE_UNSPECIFIED
    ERROR = pb.FAILURE_ERROR
    TIMEOUT = pb.FAILURE_TIMEOUT
    CRASHED = pb.FAILURE_CRASHED
    MEMORY = pb.FAILURE_MEMORY
    LOST = pb.FAILURE_LOST
    UNKNOWN_HANDLER = pb.FAILURE_UNKNOWN_HANDLER
    DEPENDENCY = pb.FAILURE_DEPENDENCY
    REFUSED = pb.FAILURE_REFUSED
    CANCELLED = pb.FAILURE_CANCELLED

    @classmethod
    def of(cls, wire_value):
        try:
            return cls(wire_value)
        except ValueError:
            return cls.UNSPECIFIED


class ColonyError(Exception):
    """Base of every Colony error; the message is one line."""


class Unreachable(ColonyError):
    """Nothing answers at the coordinator's URL (or the URL is not one nng can use)."""


class Refused(ColonyError):
    """The coordinator refused the request; nothing of it was applied. `code` is the
    ErrorReply code (`colony_pb2.ErrorReply.CODE_INVALID_ARGUMENT`, ...)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class NotFound(Refused):
    """The task or job named is not known to the coordinator (never made, or forgotten)."""


class Unavailable(Refused):
    """The coordinator takes no changes for now (its journal cannot be written), and stayed so
    for the client's whole patience. Nothing was applied; the same request may succeed later."""


class TimedOut(ColonyError):
    """No reply from the coordinator within the client's patience."""


class ProtocolViolation(ColonyError):
    """The peer answered with something that is not Colony's protocol."""


class Closed(ColonyError):
    """The client was closed."""


class UnknownTask(ColonyError):
    """The coordinator will never report this task to this client's session (its result was
    fetched elsewhere, or expired)."""

    def __init__(self, task_id):
        super().__init__(f"task {task_id} is not known to this client's session (result already fetched?)")
        self.task_id = task_id


class TaskFailed(ColonyError):
    """The task ran and failed (or was cancelled). `reason` is its one-line error, `kind` a
    FailureKind, `node` the node that saw it fail ("" when the coordinator failed it)."""

    def __init__(self, task_id, reason, kind, node=""):
        where = node if node else "a node"
        super().__init__(f"task {task_id} failed on {where}: {reason}")
        self.task_id = task_id
        self.reason = reason
        self.kind = kind
        self.node = node


class BadOutput(ColonyError):
    """The task succeeded but its output is not what the client expected (not JSON)."""


class BadInput(ColonyError, ValueError):
    """An input or option the client refuses before sending anything."""
