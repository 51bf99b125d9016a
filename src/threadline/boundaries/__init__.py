"""Standard-library boundaries. Each module patches one kind of hand-off to capture at send time
and resume around exactly the unit of work, and exposes install() / uninstall() (idempotent)."""

from __future__ import annotations

import importlib

DEFAULT = ("threads", "asyncio", "processes", "nodes")  # what configure(boundaries=True) installs


def _module(name: str):
    try:
        return importlib.import_module(f"threadline.boundaries.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"threadline.boundaries.{name}":
            raise ValueError(f"no boundary named {name!r}") from None
        raise


def install(*names: str) -> None:
    """Install the named boundaries (all defaults when none are named)."""
    for name in names or DEFAULT:
        _module(name).install()


def uninstall(*names: str) -> None:
    for name in names or DEFAULT:
        _module(name).uninstall()


def installed() -> list[str]:
    out = []
    for name in DEFAULT:
        try:
            if _module(name).installed():
                out.append(name)
        except ValueError:
            pass
    return out


def install_defaults() -> None:
    """What configure(boundaries=True) calls: every default boundary this build ships."""
    for name in DEFAULT:
        try:
            _module(name).install()
        except ValueError:
            pass
