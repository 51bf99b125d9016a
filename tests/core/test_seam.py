"""The seam is the only way in: outside the core, threadline's modules import from ``threadline``
(the public API), ``threadline.seam`` and ``threadline.semconv``, never a private name of another
module. The core is threadline/__init__.py, threadline/_*.py, seam.py and semconv.py; a package's
own private modules (boundaries/_task.py inside boundaries/) are that package's business."""

from __future__ import annotations

import ast
from pathlib import Path

import threadline

SRC = Path(threadline.__file__).parent
CORE_PUBLIC = {"threadline", "threadline.seam", "threadline.semconv"}

ALLOWED: set[str] = set()  # known breaches, each to be removed with its fix: none


def _module_name(path: Path) -> str:
    parts = ["threadline", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in_core(path: Path) -> bool:
    rel = path.relative_to(SRC)
    return len(rel.parts) == 1 and (
        rel.name.startswith("_") or rel.name in ("seam.py", "semconv.py")
    )


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_own(package: str, target: str) -> bool:
    """Whether `target` lies inside `package` (its own private modules and names are its own)."""
    return package != "threadline" and (target == package or target.startswith(package + "."))


def _breaches(path: Path, source: str | None = None) -> list[str]:
    """``file:line: what`` for each import in the module at `path` (read unless `source` is
    given) of a private module or name that is not its own package's."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = path.relative_to(SRC.parent)
    if source is None:
        source = path.read_text()
    out = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [(base, alias.name) for alias in node.names]
        else:
            continue
        for target, name in targets:
            if not (target == "threadline" or target.startswith("threadline.")):
                continue
            if _is_own(package, target):
                continue
            if any(_private(part) for part in target.split(".")):
                out.append(f"{rel}:{node.lineno}: imports {target}")
            elif name is not None and _private(name):
                out.append(f"{rel}:{node.lineno}: imports {name} from {target}")
    return out


def test_nothing_outside_the_core_imports_a_private_name_of_another_module():
    breaches = []
    for path in sorted(SRC.rglob("*.py")):
        if _in_core(path) or str(path.relative_to(SRC)) in ALLOWED:
            continue
        breaches += _breaches(path)
    assert not breaches, "outside the core, import from threadline.seam instead:\n" + "\n".join(
        breaches
    )


def test_the_allow_list_names_only_modules_that_still_need_it():
    stale = [rel for rel in sorted(ALLOWED) if not (SRC / rel).exists() or not _breaches(SRC / rel)]
    assert not stale, f"remove from ALLOWED: {stale}"


def test_the_scan_sees_a_breach():
    # The checker itself: a module of a subpackage reaching into the core is caught, its own
    # package's private module is not.
    found = _breaches(
        SRC / "boundaries" / "probe.py",
        "from threadline import _runtime\n"
        "from threadline._handoff import Handoff\n"
        "from threadline.seam import resume\n"
        "from threadline.boundaries import _task\n"
        "from . import _patches\n"
        "from ..seam import _current_runtime\n",
    )
    assert found[0].startswith("threadline/boundaries/probe.py:1: ")
    assert [line.split(": ", 1)[1] for line in found] == [
        "imports _runtime from threadline",
        "imports threadline._handoff",
        "imports _current_runtime from threadline.seam",
    ]
