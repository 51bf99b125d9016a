"""A Ray task on the program's own provider: the worker, started by the raylet, runs the
child_setup the instrumentor names, and its span lands in the caller's trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from interop_env import app_env

from threadline.testing import Capture

HERE = Path(__file__).parent


def test_a_ray_task_on_the_programs_own_provider_joins_the_callers_trace():
    capture = Capture()
    try:
        env = app_env(capture.endpoint, RAY_USAGE_STATS_ENABLED="0")
        done = subprocess.run(
            [sys.executable, "ray_app.py"], cwd=HERE, env=env, capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        trace_id = done.stdout.split()[0]
        capture.wait_for(lambda s: {"inner", "request"} <= {x.name for x in s}, timeout=30)
        spans = {s.name: s for s in capture.settle() if s.trace_id == trace_id}
        assert sorted(spans) == ["inner", "request", "run work", "submit work"]
        assert spans["submit work"].parent_id == spans["request"].span_id
        assert spans["run work"].parent_id == spans["submit work"].span_id
        assert spans["inner"].parent_id == spans["run work"].span_id
        assert {s.service for s in spans.values()} == {"interop-own"}
    finally:
        capture.close()
