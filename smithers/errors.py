"""Every exception smithers raises. Imports nothing else from smithers.

Each leaf also subclasses the builtin a caller would naturally catch, so
``except ValueError`` keeps working for code that does not know smithers.
Messages name the value, the place and the fix, in one sentence.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDecidedError",
    "AlreadyDeliveredError",
    "AmbiguousGateError",
    "ApprovalError",
    "ApprovalRefusedError",
    "BuildError",
    "CompileError",
    "ConcurrencyLimitError",
    "ContextError",
    "DefinitionError",
    "GateNotRequestedError",
    "InputError",
    "LeaseLostError",
    "LinkError",
    "LinkExpiredError",
    "LoadError",
    "MissingOutputError",
    "NotASignalError",
    "NotAnApprovalError",
    "OutputTypeChangedError",
    "RunLockedError",
    "RunNotFoundError",
    "SignalDataError",
    "SignalError",
    "SmithersError",
    "StoreError",
    "UnknownGateError",
    "UnknownNodeError",
    "UnknownRunError",
    "UnsatisfiedNeedsError",
    "ValidationError",
    "WorkflowChangedError",
]


class SmithersError(Exception):
    """The root of every error smithers raises on purpose."""


class DefinitionError(SmithersError, ValueError):
    """Raised when an element is constructed with a bad prop or child."""


class CompileError(SmithersError, ValueError):
    """Raised at render when the element tree cannot become a graph."""


class BuildError(SmithersError, RuntimeError):
    """Raised when a build function or a user component raises while rendering."""


class LoadError(SmithersError, ValueError):
    """Raised when a workflow definition cannot be loaded from a file or module."""


class InputError(SmithersError, ValueError):
    """Raised when a run's input is not valid JSON or does not match the declared input type."""


class ContextError(SmithersError, LookupError):
    """Raised when a ``Context`` question has no single answer (``iteration`` with two loops)."""


class MissingOutputError(ContextError):
    """Raised by ``Context.output`` when the node has no committed output at that iteration."""


class ValidationError(SmithersError, ValueError):
    """Raised when a value does not match a node's declared output type."""


class UnsatisfiedNeedsError(SmithersError, RuntimeError):
    """Raised when nothing can run and a node still waits on a ``needs`` that cannot be met."""


class OutputTypeChangedError(SmithersError, TypeError):
    """Raised on resume when a committed output no longer decodes into the node's current type."""


class WorkflowChangedError(SmithersError, ValueError):
    """Raised on resume when finished nodes no longer mount with the same kind and output type."""


class StoreError(SmithersError, OSError):
    """Raised when the store cannot be opened or is not a smithers store."""


class RunNotFoundError(SmithersError, LookupError):
    """Raised when no run with the given id exists in the store."""


class UnknownNodeError(SmithersError, LookupError):
    """Raised when a run's graph has no node with the given id."""


class RunLockedError(SmithersError, RuntimeError):
    """Raised when another live process owns the run."""


class ConcurrencyLimitError(SmithersError, RuntimeError):
    """Raised when a workflow with ``on_limit="reject"`` already has ``concurrency_limit``
    active runs with the new run's concurrency key; nothing is written.

    Attributes:
        ahead: The run the new one would wait behind, when known.
    """

    def __init__(self, message: str, ahead: str | None = None) -> None:
        super().__init__(message)
        self.ahead = ahead


class LeaseLostError(SmithersError, RuntimeError):
    """Raised inside an owner whose lease was taken over; it stops without committing."""


class ApprovalError(SmithersError, ValueError):
    """The root of every refusal to record an approval decision; nothing was written."""


class UnknownRunError(RunNotFoundError, ApprovalError):
    """Raised by approve/deny for a run id the store does not hold."""


class UnknownGateError(UnknownNodeError, ApprovalError):
    """Raised by approve/deny for a node id the run's graph does not hold."""


class NotAnApprovalError(ApprovalError):
    """Raised by approve/deny for a node that exists but is not an ``Approval``."""


class GateNotRequestedError(ApprovalError):
    """Raised by approve/deny for a gate whose request has not been committed."""


class AlreadyDecidedError(ApprovalError):
    """Raised by approve/deny for a gate that already holds a decision."""


class AmbiguousGateError(ApprovalError):
    """Raised when ``--node`` is left out and the run has several requested gates."""


class SignalError(SmithersError, ValueError):
    """The root of every refusal to deliver a signal; nothing was written."""


class NotASignalError(SignalError):
    """Raised by ``signal`` for a node that exists but is not a ``Signal``."""


class AlreadyDeliveredError(SignalError):
    """Raised by ``signal`` for a signal that already received its data."""


class ApprovalRefusedError(ApprovalError):
    """Raised by approve/deny for a person the gate's policy does not let decide (not an
    approver, the run's starter under ``forbid_self``, a second vote); only the
    ``approval.refused`` event is written."""


class LinkError(SmithersError, LookupError):
    """Raised for a signed link that is malformed or whose signature does not match."""


class LinkExpiredError(LinkError):
    """Raised for a signed link whose signature matches but whose expiry has passed."""


class SignalDataError(SignalError):
    """Raised by ``signal`` for data that does not match the Signal's output type."""
