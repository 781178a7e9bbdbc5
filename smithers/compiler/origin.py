"""Where user code raised: ``file:line`` from a traceback, for build and component errors.

Reads tracebacks only: no source file is opened.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["raised_at"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raised_at(exc: BaseException, fn: Callable[..., Any]) -> str | None:
    """Where ``exc`` was raised in the user's code.

    Args:
        exc: The exception, with its traceback.
        fn: The user function that was called (a build function or a component).

    Returns:
        ``path:line`` of the innermost frame in the file that defines ``fn``, else of the
        innermost frame outside smithers, or None when there is none.
    """
    code = getattr(fn, "__code__", None)
    home = os.path.abspath(code.co_filename) if code is not None else None
    frames = [
        (os.path.abspath(frame.f_code.co_filename), line)
        for frame, line in traceback.walk_tb(exc.__traceback__)
    ]
    mine = [f for f in frames if f[0] == home]
    if not mine:
        mine = [f for f in frames if not f[0].startswith(_PACKAGE + os.sep)]
    if not mine:
        return None
    path, line = mine[-1]
    return f"{path}:{line}"
