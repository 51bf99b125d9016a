"""Standard-library boundaries. Each module patches one kind of hand-off to capture at send time
and resume around exactly the unit of work, and exposes install() / uninstall() (idempotent)."""

from __future__ import annotations

import importlib

DEFAULT = ("threads", "asyncio", "processes", "nodes")  # what configure(boundaries=True) installs
_by_configure: list[str] = []  # what install_defaults() installed, for uninstall_defaults()


def _module(name: str):
    try:
        return importlib.import_module(f"threadline.boundaries.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"threadline.boundaries.{name}":
            raise ValueError(f"no boundary named {name!r}") from None
        raise


def install(*names: str) -> None:
    """Install the named boundaries (all defaults when none are named). Installed this way they
    are the caller's: a later configure(boundaries=False) leaves them be.

    names: module names under threadline.boundaries ("threads", "asyncio", "processes",
    "nodes", "mailboxes"); an unknown name raises ValueError.
    """
    for name in names or DEFAULT:
        _module(name).install()
        if name in _by_configure:
            _by_configure.remove(name)


def uninstall(*names: str) -> None:
    """Uninstall the named boundaries (all defaults when none are named), as install() names
    them. Idempotent."""
    for name in names or DEFAULT:
        _module(name).uninstall()
        if name in _by_configure:
            _by_configure.remove(name)


def installed() -> list[str]:
    """The default boundaries installed now, by name."""
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
            module = _module(name)
        except ValueError:
            continue
        if not module.installed():
            module.install()
            if name not in _by_configure:
                _by_configure.append(name)


def uninstall_defaults() -> None:
    """What configure(boundaries=False) calls: uninstall what an earlier configure() installed.
    Boundaries installed by name or by their own install() before that stay."""
    while _by_configure:
        _module(_by_configure.pop()).uninstall()
