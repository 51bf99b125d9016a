"""Fresh interpreters for the cold-path rows, started the way an installed threadline starts:
with its bytecode cached. A checkout run under PYTHONDONTWRITEBYTECODE would compile every
threadline module again on each start, which no installed copy does; the cache lives in a
directory of its own, so neither the checkout nor site-packages is written to."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time


@functools.cache
def env() -> dict[str, str]:
    """os.environ, with bytecode written to (and read from) a cache directory of this run."""
    cache = tempfile.mkdtemp(prefix="threadline-bench-pyc-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    out = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = cache
    return out


def run_ms(code: str) -> float:
    """Wall milliseconds to run `python -c code` in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env())
    return (time.perf_counter() - start) * 1e3
