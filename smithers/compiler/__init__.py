"""Element tree -> `Graph`. Pure: no I/O, no clock, no store.

Names are imported on first use, so a module that needs one piece (``iterations``, the
codecs) does not load the lowering and the renderer.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smithers.compiler.context import Context, MappingSource, OutputSource
    from smithers.compiler.graph import Edge, Graph, Group, Node
    from smithers.compiler.lower import compile_tree
    from smithers.compiler.render import render

_WHERE = {
    "Context": "smithers.compiler.context",
    "Edge": "smithers.compiler.graph",
    "Graph": "smithers.compiler.graph",
    "Group": "smithers.compiler.graph",
    "MappingSource": "smithers.compiler.context",
    "Node": "smithers.compiler.graph",
    "OutputSource": "smithers.compiler.context",
    "compile_tree": "smithers.compiler.lower",
    "render": "smithers.compiler.render",
}

__all__ = [
    "Context",
    "Edge",
    "Graph",
    "Group",
    "MappingSource",
    "Node",
    "OutputSource",
    "compile_tree",
    "render",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'smithers.compiler' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
