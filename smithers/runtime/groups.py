"""Groups of people named in approver lists (``group:release``): the use cases behind
``smithers group add/remove/list`` (and the HTTP API to come)."""

from __future__ import annotations

import re
from typing import Any

from smithers.errors import InputError
from smithers.store.base import Store

__all__ = ["add_members", "groups_document", "remove_members"]

_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_PERSON = re.compile(r"[^\s:]{1,128}")


def _check(name: str, people: tuple[str, ...], *, need_people: bool) -> None:
    if _GROUP.fullmatch(name) is None:
        raise InputError(
            f"Group name {name!r} is invalid; use letters, digits, _ . - (it is written "
            "group:NAME in approvers)."
        )
    if need_people and not people:
        raise InputError(f"No people given for group `{name}`; name at least one.")
    for person in people:
        if _PERSON.fullmatch(person) is None:
            raise InputError(
                f"Person {person!r} for group `{name}` is invalid; a name has no spaces or colons."
            )


def add_members(store: Store, name: str, people: tuple[str, ...]) -> tuple[str, ...]:
    """Add people to a group (made on first use); returns its members afterwards.

    Raises:
        InputError: For a bad group name or person's name (nothing written).
    """
    _check(name, people, need_people=True)
    return store.change_group(name, add=people)


def remove_members(store: Store, name: str, people: tuple[str, ...]) -> tuple[str, ...]:
    """Remove people from a group, or the whole group when ``people`` is empty.

    Raises:
        InputError: For a bad name, or a group the store does not hold (nothing written).
    """
    _check(name, people, need_people=False)
    members = store.actor_groups().get(name)
    if members is None:
        raise InputError(
            f"No group `{name}` in this store; list groups with `smithers group list`."
        )
    return store.change_group(name, remove=people or members)


def groups_document(store: Store) -> list[dict[str, Any]]:
    """``[{name, members}]``, sorted by name."""
    return [
        {"name": name, "members": list(members)}
        for name, members in sorted(store.actor_groups().items())
    ]
