"""Executing runs: the render / schedule / execute / persist loop and the Python API."""

from smithers.runtime.api import PendingNode, RunError, RunResult, aresume, arun, resume, run

__all__ = ["PendingNode", "RunError", "RunResult", "aresume", "arun", "resume", "run"]
