"""OTLP protobuf AnyValue -> Python value: the one conversion the core, the testing collector and
the server's decoders share. Dependency-free: it reads the message's fields and never imports
the protobuf classes."""

from __future__ import annotations

from typing import Any


def any_value(v: Any) -> Any:
    """The Python value of an `opentelemetry.proto.common.v1.AnyValue`: str, bool, int, float,
    bytes, a list (array_value), a dict (kvlist_value, the last value of a repeated key wins), or
    None when no value is set."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)
