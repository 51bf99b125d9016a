"""ThreadlineInstrumentor on the program's own provider: children leaving every way lose no
span, a killed worker's task shows, and bad set-ups get clear errors. Each case runs in a
process of its own (the instrumentor changes process-wide state)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from interop_env import app_env

from threadline.testing import Capture

HERE = Path(__file__).parent


@pytest.fixture
def capture():
    c = Capture()
    yield c
    c.close()


def run(args: list[str], capture: Capture | None = None, **env: str):
    environ = app_env(capture.endpoint if capture else "http://127.0.0.1:9", **env)
    return subprocess.run(
        [sys.executable, *args], env=environ, capture_output=True, text=True, timeout=120, cwd=HERE
    )


# (the spans named "inner" each child ends, the units of work in the request's trace)
EXITS = {"process_exit": (20, 1), "pool_recycle": (18, 6), "executor": (18, 6)}


@pytest.mark.parametrize("kind", list(EXITS))
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_no_span_lost_at_a_childs_exit(capture, method, kind):
    done = run(["exits.py", method, kind], capture)
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.split()[0]
    inner, units = EXITS[kind]
    capture.wait_for(lambda s: sum(x.name == "inner" for x in s) >= inner, timeout=30)
    spans = [s for s in capture.settle() if s.trace_id == trace_id]
    request = next(s for s in spans if s.name == "request")
    runs = [s for s in spans if s.name.startswith("run ")]
    assert len(runs) == units and {s.parent_id for s in runs} == {request.span_id}
    assert sum(s.name == "inner" for s in spans) == inner
    assert {s.parent_id for s in spans if s.name == "inner"} <= {s.span_id for s in runs}
    assert {s.service for s in spans} == {"interop-own"}
    if kind == "process_exit":
        assert runs[0].attributes["process.exit_code"] == 3 and runs[0].status == "ERROR"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_killed_workers_task_shows_on_its_sender(capture, method):
    done = run(["exits.py", method, "killed"], capture)
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.split()[0]
    capture.wait_for(lambda s: any(x.name == "request" for x in s), timeout=30)
    request = next(s for s in capture.settle() if s.name == "request")
    assert request.trace_id == trace_id
    died = request.event("threadline.worker.died")
    assert died is not None and died["process.signal"] == "SIGKILL", request.events


CHECK = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
from threadline.instrumentation import ThreadlineInstrumentor
"""


def test_a_child_setup_that_cannot_be_imported_fails_at_instrument():
    done = run(
        ["-c", CHECK + "ThreadlineInstrumentor().instrument(child_setup='telemetry:nowhere')"]
    )
    assert done.returncode == 1
    assert "ValueError: child_setup 'telemetry:nowhere': 'telemetry' has no 'nowhere'" in (
        done.stderr
    )
    done = run(["-c", CHECK + "ThreadlineInstrumentor().instrument(child_setup='no_such.mod:f')"])
    assert "ValueError: child_setup 'no_such.mod:f': cannot import 'no_such.mod'" in done.stderr
    done = run(["-c", CHECK + "ThreadlineInstrumentor().instrument(child_setup=lambda: None)"])
    assert "cannot be imported by a child process" in done.stderr


def test_a_child_setup_that_raises_runs_the_task_untraced_and_counts_it():
    code = (
        CHECK
        + """
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import telemetry

def stats(_):
    import threadline
    return threadline.export_stats()["child_setup_failed"]

if __name__ == "__main__":
    telemetry.own()
    ThreadlineInstrumentor().instrument(child_setup="telemetry:failing")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        print(list(pool.map(stats, range(3))))
"""
    )
    (HERE / "_failing_child.py").write_text(code)
    try:
        done = run(["_failing_child.py"])
    finally:
        (HERE / "_failing_child.py").unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1, 1]"  # one child, its set-up tried once
    assert done.stderr.count("child_setup 'telemetry:failing' failed") == 1
    assert "RuntimeError: no collector configured for this child" in done.stderr


def test_instrumenting_twice_warns_and_uninstrument_restores_every_patch():
    code = (
        CHECK
        + """
import asyncio.base_events, concurrent.futures, multiprocessing.pool, threading
from multiprocessing import managers, process
targets = [
    (threading.Thread, "start"), (concurrent.futures.ThreadPoolExecutor, "submit"),
    (multiprocessing.pool.Pool, "apply_async"), (process.BaseProcess, "start"),
    (concurrent.futures.ProcessPoolExecutor, "submit"), (managers.BaseProxy, "_callmethod"),
    (asyncio.base_events.BaseEventLoop, "run_in_executor"),
]
before = [getattr(c, a) for c, a in targets]
inst = ThreadlineInstrumentor()
inst.instrument()
changed = [getattr(c, a) is not b for (c, a), b in zip(targets, before)]
inst.instrument()
inst.uninstrument()
after = [getattr(c, a) is b for (c, a), b in zip(targets, before)]
from threadline import seam
print(all(changed), all(after), seam.enabled())
"""
    )
    done = run(["-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False"]
    assert "Attempting to instrument while already instrumented" in done.stderr


def test_the_old_boundary_verbs_still_work_with_a_deprecation_warning():
    code = """
import warnings
warnings.simplefilter("error")
from threadline.boundaries import threads
try:
    threads.install()
except DeprecationWarning as w:
    print(w)
"""
    done = run(["-c", code])
    assert done.stdout.strip() == (
        "threadline.boundaries.threads.install() is deprecated and will be removed in the next "
        "minor release; use threadline.boundaries.threads.instrument()"
    )
