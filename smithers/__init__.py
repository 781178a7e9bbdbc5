"""smithers: durable, human-in-the-loop workflows written as component trees.

Write a build function ``ctx -> Workflow(...)``, render its graph without running anything,
run it durably in LMDB, and approve or deny its gates from the CLI by run id and node id.
"""

import importlib
from typing import TYPE_CHECKING, Any

from smithers.compiler.context import Context
from smithers.compiler.graph import Graph
from smithers.compiler.render import render
from smithers.components import (
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    Branch,
    Element,
    Loop,
    Parallel,
    Sequence,
    Signal,
    Task,
    TaskInfo,
    Workflow,
    WorkflowDefinition,
    component,
    smithers,
)
from smithers.errors import SmithersError

if TYPE_CHECKING:
    from smithers.runtime.api import PendingNode, RunResult, aresume, arun, resume, run
    from smithers.runtime.decisions import approve, cancel, deny, signal
    from smithers.store import open_store
    from smithers.store.records import ApprovalRecord

# Running needs asyncio, LMDB and cattrs; writing and rendering a workflow needs none of
# them, so the runtime half of the API is imported on first use.
_LAZY = {
    "PendingNode": "smithers.runtime.api",
    "RunResult": "smithers.runtime.api",
    "arun": "smithers.runtime.api",
    "aresume": "smithers.runtime.api",
    "resume": "smithers.runtime.api",
    "run": "smithers.runtime.api",
    "approve": "smithers.runtime.decisions",
    "cancel": "smithers.runtime.decisions",
    "deny": "smithers.runtime.decisions",
    "signal": "smithers.runtime.decisions",
    "open_store": "smithers.store",
    "ApprovalRecord": "smithers.store.records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smithers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0.dev0"

__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalRecord",
    "ApprovalRequest",
    "Branch",
    "Context",
    "Element",
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
    "Workflow",
    "WorkflowDefinition",
    "approve",
    "aresume",
    "arun",
    "cancel",
    "component",
    "deny",
    "open_store",
    "render",
    "resume",
    "run",
    "signal",
    "smithers",
]
