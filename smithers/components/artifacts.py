"""`Artifact`: a small, content-addressed reference to bytes a task stored with its run
(DESIGN §14), and `Artifacts`, what ``task.artifacts`` is."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path

import msgspec

from smithers.errors import InputError

__all__ = ["REF_PREFIX", "Artifact", "Artifacts", "Putter"]

REF_PREFIX = "res://sha256/"


class Artifact(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A reference to bytes stored once with a run; usable as a Task's output and in
    approval request metadata (it carries no bytes).

    Attributes:
        ref: ``res://sha256/<hex>``: the SHA-256 of the bytes names them.
        name: What the task called it (``change.diff``).
        size: Size in bytes.
        media_type: The media type (``text/x-diff``), or None when unknown.
    """

    ref: str
    name: str
    size: int
    media_type: str | None = None

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the bytes (the end of ``ref``)."""
        return self.ref.removeprefix(REF_PREFIX)


Putter = Callable[[bytes, str, str | None], Artifact]
"""``(data, name, media_type) -> Artifact``: stores bytes with the run (set by the runtime)."""


class Artifacts:
    """``task.artifacts``: stores bytes with the run and returns their `Artifact`.

    Args:
        putter: What stores the bytes (the runtime's), or None outside a run.
        node_id: The task's id, for messages.
    """

    __slots__ = ("_node_id", "_putter")

    def __init__(self, putter: Putter | None, node_id: str) -> None:
        self._putter = putter
        self._node_id = node_id

    def put(
        self, data: bytes | str | Path, *, name: str, media_type: str | None = None
    ) -> Artifact:
        """Store ``data`` with the run, once per content, and return its reference.

        Args:
            data: The bytes, a text (stored as UTF-8) or a file to read.
            name: What to call it (shown by ``smithers artifact ls`` and the web page).
            media_type: Its media type; guessed from ``name`` when None (text is
                ``text/plain``).

        Returns:
            The `Artifact` (``res://sha256/<hex>``) to return as output or put in an
            approval request's metadata.

        Raises:
            InputError: When the task was not started by a run.
        """
        if self._putter is None:
            raise InputError(
                f"Task `{self._node_id}` called task.artifacts.put({name!r}) outside a run; "
                "call it from a task that a workflow run started."
            )
        if isinstance(data, Path):
            raw = data.read_bytes()
        elif isinstance(data, str):
            raw = data.encode()
            media_type = media_type or _guess(name) or "text/plain"
        else:
            raw = bytes(data)
        return self._putter(raw, name, media_type or _guess(name))


def _guess(name: str) -> str | None:
    if name.endswith((".diff", ".patch")):
        return "text/x-diff"
    if name.endswith(".log"):
        return "text/plain"
    return mimetypes.guess_type(name)[0]
