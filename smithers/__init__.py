"""smithers: durable, human-in-the-loop workflows written as component trees.

Write a build function ``ctx -> Workflow(...)``, render its graph without running anything,
run it durably in LMDB, and approve or deny its gates from the CLI by run id and node id.

Every name below is imported on first use, so ``smithers.cli`` (and any single module)
loads only what it needs: listing the approvals inbox never imports the compiler or asyncio.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smithers.compiler.context import Context
    from smithers.compiler.graph import Graph
    from smithers.compiler.render import render
    from smithers.components import (
        Approval,
        ApprovalDecision,
        ApprovalRequest,
        Artifact,
        Branch,
        Element,
        Escalation,
        Loop,
        Parallel,
        Sequence,
        Signal,
        Task,
        TaskInfo,
        Timer,
        TimerFired,
        Vote,
        Workflow,
        WorkflowDefinition,
        component,
        smithers,
    )
    from smithers.errors import SmithersError
    from smithers.runtime.api import PendingNode, RunResult, aresume, arun, resume, run
    from smithers.runtime.decisions import approve, cancel, deny, signal
    from smithers.runtime.retry import aretry, retry
    from smithers.store import open_store
    from smithers.store.records import ApprovalRecord

__version__ = "0.1.0.dev0"

_COMPONENTS = "smithers.components"
_WHERE = {
    "Approval": _COMPONENTS,
    "ApprovalDecision": _COMPONENTS,
    "ApprovalRecord": "smithers.store.records",
    "ApprovalRequest": _COMPONENTS,
    "Artifact": _COMPONENTS,
    "Branch": _COMPONENTS,
    "Context": "smithers.compiler.context",
    "Element": _COMPONENTS,
    "Escalation": _COMPONENTS,
    "Graph": "smithers.compiler.graph",
    "Loop": _COMPONENTS,
    "Parallel": _COMPONENTS,
    "PendingNode": "smithers.runtime.api",
    "RunResult": "smithers.runtime.api",
    "Sequence": _COMPONENTS,
    "Signal": _COMPONENTS,
    "SmithersError": "smithers.errors",
    "Task": _COMPONENTS,
    "TaskInfo": _COMPONENTS,
    "Timer": _COMPONENTS,
    "TimerFired": _COMPONENTS,
    "Vote": _COMPONENTS,
    "Workflow": _COMPONENTS,
    "WorkflowDefinition": _COMPONENTS,
    "approve": "smithers.runtime.decisions",
    "aresume": "smithers.runtime.api",
    "aretry": "smithers.runtime.retry",
    "arun": "smithers.runtime.api",
    "cancel": "smithers.runtime.decisions",
    "component": _COMPONENTS,
    "deny": "smithers.runtime.decisions",
    "open_store": "smithers.store",
    "render": "smithers.compiler.render",
    "resume": "smithers.runtime.api",
    "retry": "smithers.runtime.retry",
    "run": "smithers.runtime.api",
    "signal": "smithers.runtime.decisions",
    "smithers": _COMPONENTS,
}

__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalRecord",
    "ApprovalRequest",
    "Artifact",
    "Branch",
    "Context",
    "Element",
    "Escalation",
    "Graph",
    "Loop",
    "Parallel",
    "PendingNode",
    "RunResult",
    "Sequence",
    "Signal",
    "SmithersError",
    "Task",
    "TaskInfo",
    "Timer",
    "TimerFired",
    "Vote",
    "Workflow",
    "WorkflowDefinition",
    "approve",
    "aresume",
    "aretry",
    "arun",
    "cancel",
    "component",
    "deny",
    "open_store",
    "render",
    "resume",
    "retry",
    "run",
    "signal",
    "smithers",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'smithers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
