"""Element tree -> `Graph`. Pure: no I/O, no clock, no store."""

from smithers.compiler.context import Context, MappingSource, OutputSource
from smithers.compiler.graph import Edge, Graph, Group, Node
from smithers.compiler.lower import compile_tree
from smithers.compiler.render import render

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
