"""What users write: elements, the built-in components, ``@component`` and ``smithers()``."""

from smithers.components.artifacts import Artifact
from smithers.components.component import ComponentElement, component
from smithers.components.definition import WorkflowDefinition, smithers
from smithers.components.element import Element, is_valid_id
from smithers.components.groups import Branch, Loop, Parallel, Sequence, Workflow
from smithers.components.nodes import (
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    Signal,
    Task,
    TaskInfo,
)
from smithers.components.policy import Escalation, TimerFired, Vote
from smithers.components.timer import Timer

__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalRequest",
    "Artifact",
    "Branch",
    "ComponentElement",
    "Element",
    "Escalation",
    "Loop",
    "Parallel",
    "Sequence",
    "Signal",
    "Task",
    "TaskInfo",
    "Timer",
    "TimerFired",
    "Vote",
    "Workflow",
    "WorkflowDefinition",
    "component",
    "is_valid_id",
    "smithers",
]
