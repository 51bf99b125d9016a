"""The boundaries' names of 0.1 (install / uninstall / installed), kept for one minor release:
each warns with a DeprecationWarning naming the new one."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed(new: F, old: str) -> F:
    """`new` under its old name `old` ("threadline.boundaries.install"): calling it warns."""
    new_name = f"{new.__module__}.{new.__qualname__}"

    @functools.wraps(new)
    def old_name(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"{old}() is deprecated and will be removed in the next minor release; "
            f"use {new_name}()",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    old_name.__name__ = old_name.__qualname__ = old.rpartition(".")[2]
    old_name.__doc__ = f"Deprecated: {new_name}()."
    return old_name  # type: ignore[return-value]
