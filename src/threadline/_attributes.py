"""Attribute values: what the OpenTelemetry API accepts passes as it is; what it would turn into
an anonymous string (or None) is kept as its repr, with a warning naming the key.

The API decides. From 1.4x it takes any AnyValue (str, bool, int, float, bytes, None, and
sequences and mappings of those, mixed or nested); older APIs take scalars and homogeneous
sequences of them, and say so through their own _clean_attribute.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import attributes as _api

log = logging.getLogger("threadline")

_SCALARS = (str, bool, int, float, bytes, type(None))
PLAIN = frozenset((str, bool, int, float))
_MAX_WARNED = 1000  # distinct keys warned about; dynamic keys must not grow this without end
_warned: set[Any] = set()
_legacy = (
    getattr(_api, "_clean_attribute", None) if not hasattr(_api, "_clean_attribute_value") else None
)


def accepted(value: Any) -> bool:
    """Whether the OTel API keeps this value as it is (rather than str()-ing or dropping it)."""
    if _legacy is not None:
        return _legacy("key", value, None) is not None
    return _any_value(value)


def _any_value(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, Sequence):
        return all(_any_value(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and k and _any_value(v) for k, v in value.items())
    return False


def _warn(key: Any, message: str, *args: Any) -> None:
    if key in _warned or len(_warned) >= _MAX_WARNED:
        return
    try:
        _warned.add(key)
    except TypeError:  # an unhashable key: warned about every time
        pass
    log.warning("threadline: " + message + " (logged once per key)", *args)


def checked(key: Any, value: Any) -> Any:
    """value, or its repr when the API would not keep it; warns naming the key."""
    if type(value) in PLAIN or accepted(value):
        return value
    _warn(
        key,
        "attribute %r: OpenTelemetry does not accept a value of type %s; recorded as its repr",
        key,
        type(value).__name__,
    )
    return repr(value)


def clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Attributes for a span: accepted values as they are, others as their repr, keys as str."""
    if not attributes:
        return None
    if not isinstance(attributes, Mapping):
        raise TypeError(
            f"attributes must be a mapping of names to values, not {type(attributes).__name__}"
        )
    for key, value in attributes.items():  # fast path: plain scalars pass as they are
        if type(key) is not str or type(value) not in PLAIN:
            break
    else:
        return attributes  # type: ignore[return-value]
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            _warn(
                key,
                "attribute key %r is not a string but %s; recorded as its str()",
                key,
                type(key).__name__,
            )
            key = str(key)
        if not key:
            _warn(key, "an attribute key is empty; its value %r is not recorded", value)
            continue
        out[key] = checked(key, value)
    return out
