"""Encoding at the model boundary: output types, value validation, graph <-> builtins, hashes.

msgspec owns every byte; cattrs turns the attrs graph into builtins and back. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import types
import typing
import zlib
from typing import TYPE_CHECKING, Any

import msgspec

from smithers.compiler.graph import Graph

if TYPE_CHECKING:
    import cattrs
from smithers.errors import ValidationError

__all__ = [
    "check_value",
    "decode_frame",
    "decode_value",
    "decoder_for",
    "encode_frame",
    "graph_from_builtins",
    "graph_hash",
    "graph_to_builtins",
    "type_name",
    "validate_value",
]

_ENCODER = msgspec.msgpack.Encoder()
_DETERMINISTIC = msgspec.msgpack.Encoder(order="deterministic")
_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
_ANY_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()


def type_name(tp: Any) -> str:
    """Return a short, stable display name for an output type (``Build``, ``list[int]``)."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    origin = typing.get_origin(tp)
    if origin is not None:
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return " | ".join(type_name(a) for a in args)
        if origin is typing.Literal:
            return f"Literal[{', '.join(repr(a) for a in args)}]"
        base = (
            getattr(origin, "__qualname__", None) or getattr(origin, "_name", None) or repr(origin)
        )
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else str(base)
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def decoder_for(tp: Any) -> msgspec.msgpack.Decoder[Any]:
    """Return a cached msgpack decoder validating into ``tp``.

    Raises:
        TypeError: When msgspec cannot validate into ``tp`` (e.g. a union of two dataclasses).
    """
    try:
        return _DECODERS[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build one each time
        return msgspec.msgpack.Decoder(tp)
    decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(tp)
    _DECODERS[tp] = decoder
    return decoder


def check_value(value: Any, tp: Any) -> tuple[Any, bytes]:
    """Validate ``value`` into ``tp`` by encoding then decoding it.

    Returns:
        The decoded value and its canonical msgpack bytes (exactly what gets committed).

    Raises:
        ValueError: With msgspec's reason, which names the field path
            (``Expected `str`, got `int` - at `$.version```).
    """
    try:
        raw = _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"a `{type(value).__name__}` cannot be encoded ({exc})") from None
    try:
        decoded = decoder_for(tp).decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    return decoded, _ENCODER.encode(decoded)


def validate_value(value: Any, tp: Any, *, what: str) -> tuple[Any, bytes]:
    """Like `check_value`, but raise a `ValidationError` that names ``what`` and the fix.

    Args:
        value: The value to validate (a run's return value, a payload, a signal's data).
        tp: The declared type.
        what: How the value is named, e.g. ``Task `build` returned a value that``.

    Raises:
        ValidationError: ``{what} does not match `Build`: Expected `str`, got `int` - at
            `$.version`; return a `Build`.``
    """
    try:
        return check_value(value, tp)
    except ValueError as exc:
        raise ValidationError(
            f"{what} does not match `{type_name(tp)}`: {exc}; return a `{type_name(tp)}`."
        ) from None


def encode_value(value: Any) -> bytes:
    """Encode an already-validated value as msgpack."""
    return _ENCODER.encode(value)


def decode_value(raw: bytes, tp: Any = None) -> Any:
    """Decode committed bytes into ``tp`` (or into builtins when ``tp`` is None): a fresh copy."""
    if tp is None:
        return _ANY_DECODER.decode(raw)
    return decoder_for(tp).decode(raw)


_CONVERTERS: list[cattrs.Converter] = []


def _converter() -> cattrs.Converter:
    """The graph converter, built on first use (cattrs is slow to import; authoring and
    rendering do not need it until a graph is hashed or stored)."""
    if not _CONVERTERS:
        _CONVERTERS.append(_make_converter())
    return _CONVERTERS[0]


def _make_converter() -> cattrs.Converter:
    import cattrs
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    converter = cattrs.Converter()
    # The callables behind the nodes ride along in memory only: never hashed or stored.
    omit = override(omit=True)
    converter.register_unstructure_hook(
        Graph, make_dict_unstructure_fn(Graph, converter, elements=omit, loop_elements=omit)
    )
    converter.register_structure_hook(
        Graph, make_dict_structure_fn(Graph, converter, elements=omit, loop_elements=omit)
    )
    return converter


def graph_to_builtins(graph: Graph) -> dict[str, Any]:
    """Return the graph's serializable content as builtins (callables left out)."""
    data: dict[str, Any] = _converter().unstructure(graph)
    return data


def graph_from_builtins(data: dict[str, Any]) -> Graph:
    """Rebuild a graph (without its callables) from `graph_to_builtins` output."""
    data = {k: v for k, v in data.items() if k != "hash"}
    return _converter().structure(data, Graph)


def _packed(graph: Graph) -> bytes:
    """The deterministic msgpack form of the graph's builtins, computed once per graph."""
    cache = graph._cache  # the graph is immutable, so its encoding can be remembered
    raw = cache.get("packed")
    if raw is None:
        raw = cache["packed"] = _DETERMINISTIC.encode(graph_to_builtins(graph))
    return bytes(raw)


def graph_hash(graph: Graph) -> str:
    """Hash the deterministic msgpack form of the graph's builtins (blake2b, 16 bytes)."""
    return hashlib.blake2b(_packed(graph), digest_size=16).hexdigest()


def encode_frame(graph: Graph) -> bytes:
    """Encode a graph as a compressed frame for the store (deduplicated by its hash)."""
    return zlib.compress(_packed(graph), 6)


_FRAMES: dict[bytes, Graph] = {}


def decode_frame(raw: bytes) -> Graph:
    """Decode a frame written by `encode_frame` (remembered: a frame never changes, and one
    command often needs the same frame several times)."""
    found = _FRAMES.get(raw)
    if found is None:
        found = graph_from_builtins(_ANY_DECODER.decode(zlib.decompress(raw)))
        if len(_FRAMES) >= 16:
            _FRAMES.pop(next(iter(_FRAMES)))
        _FRAMES[raw] = found
    return found
