"""Standard-library boundaries. Each module patches one kind of hand-off to capture at send time
and resume around exactly the unit of work, and exposes instrument() / uninstrument() (idempotent)
and instrumented(), the verbs of OpenTelemetry's instrumentors."""

from __future__ import annotations

import importlib
from types import ModuleType

from threadline.boundaries._renamed import renamed

DEFAULT = ("threads", "asyncio", "processes", "nodes")  # what configure(boundaries=True) installs
_by_configure: list[str] = []  # what instrument_defaults() installed, for uninstrument_defaults()


def module(name: str) -> ModuleType:
    """The boundary module of that name; an unknown name raises ValueError."""
    try:
        return importlib.import_module(f"threadline.boundaries.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"threadline.boundaries.{name}":
            raise ValueError(f"no boundary named {name!r}") from None
        raise


def instrument(*names: str) -> None:
    """Install the named boundaries (all defaults when none are named). Installed this way they
    are the caller's: a later configure(boundaries=False) leaves them be.

    names: module names under threadline.boundaries ("threads", "asyncio", "processes",
    "nodes", "mailboxes"); an unknown name raises ValueError.
    """
    for name in names or DEFAULT:
        module(name).instrument()
        if name in _by_configure:
            _by_configure.remove(name)


def uninstrument(*names: str) -> None:
    """Uninstall the named boundaries (all defaults when none are named), as instrument() names
    them. Idempotent."""
    for name in names or DEFAULT:
        module(name).uninstrument()
        if name in _by_configure:
            _by_configure.remove(name)


def instrumented() -> list[str]:
    """The default boundaries installed now, by name."""
    out = []
    for name in DEFAULT:
        try:
            if module(name).instrumented():
                out.append(name)
        except ValueError:
            pass
    return out


def instrument_defaults() -> None:
    """What configure(boundaries=True) calls: every default boundary this build ships."""
    for name in DEFAULT:
        try:
            boundary = module(name)
        except ValueError:
            continue
        if not boundary.instrumented():
            boundary.instrument()
            if name not in _by_configure:
                _by_configure.append(name)


def uninstrument_defaults() -> None:
    """What configure(boundaries=False) calls: uninstall what an earlier configure() installed.
    Boundaries installed by name or by their own instrument() before that stay."""
    while _by_configure:
        module(_by_configure.pop()).uninstrument()


# The names of 0.1, kept for one minor release.
install = renamed(instrument, "threadline.boundaries.install")
uninstall = renamed(uninstrument, "threadline.boundaries.uninstall")
installed = renamed(instrumented, "threadline.boundaries.installed")
