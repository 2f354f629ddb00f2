"""Colony from Python: a client (`Colony`, `AsyncColony`) and a node (`colony.node.run`) for
a Colony cluster. The wire protocol is docs/PROTOCOL.md in the Colony repository."""
from .aio import AsyncColony
from .client import Colony, Counter, Limit, NodeState, Result, Status, TaskFuture, as_completed, wait
from .errors import (BadInput, BadOutput, Closed, ColonyError, FailureKind, NotFound, ProtocolViolation, Refused, TaskFailed,
                     TimedOut, Unavailable, UnknownTask, Unreachable)
from .jobs import Job, JobFailure, JobState

__all__ = ["Colony", "AsyncColony", "Counter", "Limit", "NodeState", "Result", "Status", "TaskFuture", "as_completed", "wait",
           "Job", "JobFailure", "JobState", "NotFound",
           "ColonyError", "BadInput", "BadOutput", "Closed", "FailureKind", "ProtocolViolation", "Refused", "TaskFailed",
           "TimedOut", "Unavailable", "UnknownTask", "Unreachable"]
__version__ = "0.1.0"
