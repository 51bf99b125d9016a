"""Attributes a boundary replaced on classes, and how to put every one of them back."""

from __future__ import annotations

from typing import Any

_MISSING = object()


class Patches:
    __slots__ = ("_saved",)

    def __init__(self) -> None:
        self._saved: list[tuple[type, str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self._saved)

    def set(self, owner: type, name: str, value: Any) -> None:
        """Replace owner.name; the class's own attribute (or its absence) is kept for restore()."""
        self._saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, old in reversed(self._saved):
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        self._saved.clear()
