"""The environment the interop tests run their apps in."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent


def app_env(endpoint: str, **extra: str) -> dict[str, str]:
    """This process's environment without OTEL_* and THREADLINE_* (the set-ups read those: only
    what the test says counts), the collector at $INTEROP_ENDPOINT, and this folder importable
    (telemetry.py, by name, in every child)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_"))}
    path = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(HERE)) if p)
    return {**env, "INTEROP_ENDPOINT": endpoint, "PYTHONPATH": path, **extra}
