"""Child processes: multiprocessing.Process, multiprocessing.Pool and ProcessPoolExecutor, for
the fork, spawn and forkserver start methods.

- A child is configured like its parent (threadline.seam.child_settings()): the settings
  travel with the Process object (pickled for spawn/forkserver, in memory for fork), and the
  child reconfigures before running its target, with its own pid and its parent's in the resource.
- Work is captured when it is handed off (Process.start, Pool.apply_async/map/imap/...,
  executor.submit/map) and runs in the child under a "run <function>" span parented to the
  sender's span. A pool worker carries no context of its own: a reused worker never leaks the
  previous task's trace.
- A child exports every ended span before it exits (threadline.seam.guard()) and announces each task's
  span as it starts (a pending copy, docs/internals.md), so a worker killed mid-task still shows
  an incomplete span; configure(announce=True) announces every span. When the parent sees a
  worker die, it records `threadline.worker.died` on the sender's span, or in a short
  "worker died" span under it once it has ended (not for a worker it stopped itself with
  terminate()). A pool worker notes which task it is running (_Running), so a death is told to
  the sender of that task only.

multiprocessing.pool.ThreadPool is left to the threads boundary.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import signal
import tempfile
import threading
import weakref
from concurrent.futures import process as futures_process
from multiprocessing import connection, managers, pool, process
from typing import Any, cast

from opentelemetry import trace

from threadline import seam, semconv
from threadline.boundaries._renamed import renamed
from threadline.seam import Handoff, call, capture, resume

log = logging.getLogger("threadline")

BOUNDARY = "processes"

_originals: dict[str, Any] = {}
_lock = threading.Lock()
_open: list[trace.Span] = []  # unit-of-work spans running in this process (ended at os._exit)


def _long_lived(target: Any) -> bool:
    """Processes that serve many units of work must not run under their starter's context."""
    target = getattr(target, "__func__", target)
    return target in (
        pool.worker,  # pyright: ignore[reportAttributeAccessIssue] - not in typeshed
        futures_process._process_worker,  # noqa: SLF001 - the stdlib's worker loops
        managers.BaseManager._run_server.__func__,  # noqa: SLF001  # pyright: ignore[reportAttributeAccessIssue]
    )


# -- the child's side --------------------------------------------------------------------------


class _Seed:
    """What a child needs from its parent: configure() arguments and, for a plain Process, the
    context of start(). Pickles to plain values; unpickling it (spawn, forkserver) installs this
    boundary so the child's _bootstrap is ours."""

    __slots__ = ("settings", "handoff")

    def __init__(self, settings: dict[str, Any], handoff: Handoff | None) -> None:
        self.settings = settings
        self.handoff = handoff

    def __reduce__(self):
        return (_arrive, (self.settings, self.handoff))

    def plant(self) -> None:
        _plant(self.settings)


_planted_pid = 0


def _plant(settings: dict[str, Any] | None) -> None:
    """Set this child up like its parent (once per process), and flush before it exits,
    however it exits."""
    global _planted_pid
    pid = os.getpid()
    if (
        settings is None
        or _planted_pid == pid
        or settings["resource_attributes"].get("process.parent_pid") == pid
    ):
        return
    _planted_pid = os.getpid()
    try:
        seam.set_up_child(settings)
        instrument()
        seam.guard()
    except Exception:  # tracing never keeps a child from running
        log.warning("threadline: could not set up child process", exc_info=True)


def _arrive(settings: dict[str, Any], handoff: Handoff | None) -> _Seed:
    instrument()
    return _Seed(settings, handoff)


def _end_open_units(code: int | None, signum: int | None) -> None:
    """At os._exit or SIGTERM mid-task: the task ends with the process; say so on its span."""
    for s in reversed(list(_open)):
        seam.mark_cut_short(s, code, signum)
        s.end()
    _open.clear()


seam.before_exit(_end_open_units)


class _Unit:
    """A span around one unit of work in a child, tracked so os._exit can end it."""

    __slots__ = ("_cm", "_span", "_announce")

    def __init__(self, handoff: Handoff | None, name: str, announce: bool = True) -> None:
        self._cm = resume(
            handoff, name, attributes={"process.pid": os.getpid(), semconv.BOUNDARY: BOUNDARY}
        )
        self._span: trace.Span | None = None
        self._announce = announce

    def __enter__(self) -> trace.Span:
        self._span = self._cm.__enter__()
        if self._announce:  # a worker may be killed mid-task: make the task visible now
            seam.announce(self._span)
        _open.append(self._span)
        return self._span

    def __exit__(self, exc_type, exc, tb):
        if self._span in _open:
            _open.remove(self._span)
        if exc_type is SystemExit:
            span = cast(trace.Span, self._span)  # set by __enter__
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            span.set_attribute("process.exit_code", code)
            if code == 0:  # sys.exit(0) is a normal end, not an error
                self._cm.__exit__(None, None, None)
                return None
            span.set_status(
                trace.Status(trace.StatusCode.ERROR, f"process exited with code {code}")
            )
        return self._cm.__exit__(exc_type, exc, tb)


def _name(fn: Any) -> str:
    return "run " + (
        getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__qualname__
    )


def _bootstrap(self, parent_sentinel=None):
    seed = self.__dict__.pop("_threadline_seed", None)
    if seed is None:
        return _originals["_bootstrap"](self, parent_sentinel)
    seed.plant()
    if seed.handoff is not None:
        run = self.run
        name = (
            _name(self._target)
            if self._target is not None
            else f"run {type(self).__qualname__}.run"
        )

        # Started outside any trace (at boot, say), the process is a worker for the life of its
        # process, not a task someone waits on: not announced, so a healthy one is not shown as
        # a span that never ended. Its run span is exported when it ends.
        within_a_trace = seed.handoff.span_context.is_valid

        def traced_run() -> None:
            with _Unit(seed.handoff, name, announce=within_a_trace):
                run()

        self.run = traced_run
    try:
        return _originals["_bootstrap"](self, parent_sentinel)
    finally:
        seam.final_flush()


class _Task:
    """A function handed to a pool, with the context of the hand-off, the settings to configure
    the worker with if nothing has yet, and where the worker notes what it runs. Picklable when
    the function is; the handoff travels as W3C headers."""

    __slots__ = ("fn", "handoff", "settings", "board")

    def __init__(
        self,
        fn: Any,
        handoff: Handoff,
        settings: dict[str, Any] | None = None,
        board: str | None = None,
    ) -> None:
        self.fn = fn
        self.handoff = handoff
        self.settings = settings
        self.board = board

    def __reduce__(self):
        return (_Task, (self.fn, self.handoff, self.settings, self.board))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _plant(self.settings)
        _running.mark(self.board, self.handoff.span_context.span_id)
        try:
            with _Unit(self.handoff, _name(self.fn)):
                result = self.fn(*args, **kwargs)
        except Exception:
            _running.mark(self.board, None)
            raise
        # Not on SystemExit: the worker dies with this task, which its sender should hear of.
        _running.mark(self.board, None)
        return result


class _Running:
    """Which task each pool worker is running, readable after the worker is gone: one 9-byte
    file per worker pid in a directory of the parent's, b"\\x01" + the sender's span id while a
    task runs and zeros once it returned, written by the worker, read (and removed) by the
    parent when it reaps the worker."""

    def __init__(self) -> None:
        self.dir: str | None = None
        self._file = (0, -1)  # (pid, fd) of this worker's file

    def board(self) -> str:
        """The directory workers started from this process write to (made on first use)."""
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="threadline-workers-")
            atexit.register(_remove_board, self.dir, os.getpid())
        return self.dir

    def mark(self, board: str | None, span_id: int | None) -> None:
        """In a worker: now running the task sent from span_id, or (None) between tasks."""
        if board is None:
            return
        pid, fd = self._file
        if pid != os.getpid():
            try:
                fd = os.open(
                    os.path.join(board, str(os.getpid())),
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                    0o600,
                )
            except OSError:
                fd = -1
            self._file = (os.getpid(), fd)
        if fd >= 0:
            record = bytes(9) if span_id is None else b"\x01" + span_id.to_bytes(8, "big")
            try:
                os.pwrite(fd, record, 0)
            except OSError:
                pass

    def take(self, pid: int | None) -> tuple[bool, int] | None:
        """(running, sender span id) for a worker that has exited, or None if unknown."""
        if self.dir is None or not pid:
            return None
        path = os.path.join(self.dir, str(pid))
        try:
            with open(path, "rb") as f:
                record = f.read(9)
            os.unlink(path)
        except OSError:
            return None
        if len(record) != 9:
            return None
        return bool(record[0]), int.from_bytes(record[1:], "big")


def _remove_board(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not a forked child leaving: the directory is its parent's
        shutil.rmtree(path, ignore_errors=True)


_running = _Running()


def configure_children(**overrides: Any) -> None:
    """configure() arguments children take instead of this process's own, for every child
    started from now on: ``configure_children(service_name="worker", announce=False)``.
    Without arguments, children are configured like this process again.

    overrides: keyword arguments of threadline.configure(), by name.
    """
    seam.children(overrides or None)


def rename(service_name: str) -> None:
    """Reconfigure this process as it is, under another service name: for a child or a node
    that should show as its own service (``Process(target=...)`` code, a Pool ``initializer``,
    ``manager.start(initializer=rename, initargs=("inventory",))``).

    service_name: the service.name this process reports from now on. Raises RuntimeError when
    threadline is not configured in this process.
    """
    s = seam.settings()
    if s is None:
        raise RuntimeError(
            "threadline is not configured in this process: call threadline.configure()"
        )
    args = {**s.to_dict(), "service_name": service_name}
    if s.exporter == "custom":  # the same exporter instance serves on
        args["exporter"] = seam.current_exporter()
    seam.configure(**args)
    seam.adopt(_open)  # the run span this process is in reports under the new name too


# -- the parent's side -------------------------------------------------------------------------


def _start(self) -> None:
    settings = seam.child_settings()
    if settings is not None:
        handoff = None if _long_lived(getattr(self, "_target", None)) else capture()
        self._threadline_seed = _Seed(settings, handoff)
        self._threadline_sender = handoff
    return _originals["start"](self)


def _died(sender: Handoff | None, pid: int | None, exitcode: int, task: str | None = None) -> None:
    """Record a worker's death on the sender's span; once that has ended, in a short "worker
    died" span under it. `task` says how the sender is known: "running" (the worker was running
    its task) or "unknown" (told to every task in flight)."""
    attrs: dict[str, Any] = {"process.pid": pid or 0}
    if exitcode < 0:
        try:
            attrs["process.signal"] = signal.Signals(-exitcode).name
            how = f"was killed by {attrs['process.signal']}"
        except ValueError:
            attrs["process.signal"] = str(-exitcode)
            how = f"was killed by signal {-exitcode}"
    else:
        attrs["process.exit_code"] = exitcode
        how = f"exited with code {exitcode}"
    if task is not None:
        attrs[semconv.WORKER_TASK] = task
    span = trace.get_current_span(sender.context) if sender else trace.get_current_span()
    if span.is_recording():
        span.add_event(semconv.WORKER_DIED, attrs)
    elif sender:
        with resume(sender, "worker died", attributes=attrs) as s:
            s.add_event(semconv.WORKER_DIED, attrs)
            s.set_status(trace.Status(trace.StatusCode.ERROR, f"worker {pid} {how}"))


def _terminate(self) -> None:
    # Stopped on purpose (Pool.terminate, leaving `with Pool(...)`): not a death to report. A
    # task it interrupts says so itself: the child ends the task's span with process.signal.
    self._threadline_stopped = True
    _originals["terminate"](self)


def _join(self, timeout=None) -> None:
    _originals["join"](self, timeout)
    code = self.exitcode
    if code is None:
        return
    if _running.dir is not None and "_threadline_running" not in self.__dict__:
        self._threadline_running = _running.take(self.pid)  # a pool worker's last note
    sender = self.__dict__.get("_threadline_sender")
    if (
        code < 0
        and sender is not None
        and not self.__dict__.get("_threadline_reported")
        and not self.__dict__.get("_threadline_stopped")
    ):
        self._threadline_reported = True
        _died(sender, self.pid, code)


def _pool_worker_died(worker: Any, in_flight: list[Handoff]) -> None:
    """Tell the sender of the task a dead pool worker was running; if that is not known, the
    sender of every task in flight, saying so."""
    code, pid = worker.exitcode, worker.pid
    running = worker.__dict__.get("_threadline_running") or _running.take(pid)
    if running is not None:
        busy, span_id = running
        if not busy:
            return  # it died between tasks: nobody's work went with it
        sender = next((h for h in in_flight if h.span_context.span_id == span_id), None)
        _died(sender, pid, code, "running")
        return
    senders = {h.span_context.span_id: h for h in in_flight}  # each sender once
    for h in list(senders.values()) or [None]:
        _died(h, pid, code, "unknown")


# Pool: tasks are wrapped when handed off; the pool keeps the senders of its jobs in flight so a
# dead worker can be reported on them.
_pools_by_workers: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _is_thread_pool(p: Any) -> bool:
    return isinstance(p, pool.ThreadPool)


def _remember(p: Any, result: Any, handoff: Handoff) -> None:
    senders = p.__dict__.setdefault("_threadline_senders", {})
    cache = p._cache  # noqa: SLF001
    for job in [j for j in senders if j not in cache]:
        del senders[job]
    senders[result._job] = handoff  # noqa: SLF001
    _pools_by_workers[id(p._pool)] = p  # noqa: SLF001


# Where callback and error_callback sit in the positional arguments after func.
_CALLBACKS_AT = {"apply_async": 2, "_map_async": 3}


def _bind_callbacks(handoff: Handoff, at: int | None, args: tuple, kwargs: dict) -> tuple:
    """Callbacks run in the pool's result thread; run them in the submitter's context."""
    if at is None:
        return args
    out = list(args)
    for i in (at, at + 1):
        if i < len(out) and out[i] is not None:
            out[i] = functools.partial(call, handoff, out[i])
    for key in ("callback", "error_callback"):
        if kwargs.get(key) is not None:
            kwargs[key] = functools.partial(call, handoff, kwargs[key])
    return tuple(out)


def _pool_method(name: str):
    original = getattr(pool.Pool, name)
    callbacks_at = _CALLBACKS_AT.get(name)

    @functools.wraps(original)
    def patched(self, func, *args, **kwargs):
        if _is_thread_pool(self) or not seam.enabled():
            return original(self, func, *args, **kwargs)
        handoff = capture()
        args = _bind_callbacks(handoff, callbacks_at, args, kwargs)
        task = _Task(func, handoff, seam.child_settings(), _running.board())
        result = original(self, task, *args, **kwargs)
        if hasattr(result, "_job"):
            _remember(self, result, handoff)
        return result

    return patched


def _join_exited_workers(workers):
    before = list(workers)
    cleaned = _originals["_join_exited_workers"](workers)
    owner = _pools_by_workers.get(id(workers))
    if cleaned and owner is not None:
        cache = owner._cache  # noqa: SLF001
        in_flight = [
            h for job, h in owner.__dict__.get("_threadline_senders", {}).items() if job in cache
        ]
        for w in before:
            if w not in workers and w.exitcode != 0 and not w.__dict__.get("_threadline_stopped"):
                _pool_worker_died(w, in_flight)
    return cleaned


def _submit(self, fn, /, *args, **kwargs):
    already = (
        isinstance(fn, functools.partial)
        and fn.func is futures_process._process_chunk  # noqa: SLF001
        and isinstance(fn.args[0], _Task)
    )
    if already or not seam.enabled():
        return _originals["submit"](self, fn, *args, **kwargs)
    task = _Task(fn, capture(), seam.child_settings(), _running.board())
    return _originals["submit"](self, task, *args, **kwargs)


def _map(self, fn, *iterables, timeout=None, chunksize=1):
    if seam.enabled():
        fn = _Task(fn, capture(), seam.child_settings(), _running.board())
    return _originals["map"](self, fn, *iterables, timeout=timeout, chunksize=chunksize)


def _terminate_broken(self, cause):
    procs = list(self.processes.values())
    ended = connection.wait([p.sentinel for p in procs], timeout=0)
    in_flight = []
    for item in list(self.pending_work_items.values()):
        fn = item.fn.args[0] if isinstance(item.fn, functools.partial) else item.fn
        if isinstance(fn, _Task):
            in_flight.append(fn.handoff)
    for p in procs:
        if p.sentinel in ended:
            p.join(1)  # its exit code: the sentinel closes a moment before the child is reapable
        if p.exitcode not in (None, 0):
            _pool_worker_died(p, in_flight)
    return _originals["terminate_broken"](self, cause)


# -- install -----------------------------------------------------------------------------------

_PATCHES = [
    (process.BaseProcess, "start", lambda: _start),
    (process.BaseProcess, "_bootstrap", lambda: _bootstrap),
    (process.BaseProcess, "join", lambda: _join),
    (process.BaseProcess, "terminate", lambda: _terminate),
    (pool.Pool, "apply_async", lambda: _pool_method("apply_async")),
    (pool.Pool, "_map_async", lambda: _pool_method("_map_async")),
    (pool.Pool, "imap", lambda: _pool_method("imap")),
    (pool.Pool, "imap_unordered", lambda: _pool_method("imap_unordered")),
    (pool.Pool, "_join_exited_workers", lambda: staticmethod(_join_exited_workers)),
    (futures_process.ProcessPoolExecutor, "submit", lambda: _submit),
    (futures_process.ProcessPoolExecutor, "map", lambda: _map),
    (futures_process._ExecutorManagerThread, "terminate_broken", lambda: _terminate_broken),  # noqa: SLF001
]


def instrument() -> None:
    """Patch Process, Pool and ProcessPoolExecutor (once)."""
    with _lock:
        if _originals:
            return
        for owner, attr, make in _PATCHES:
            _originals[attr] = owner.__dict__[attr]
            if isinstance(_originals[attr], staticmethod):
                _originals[attr] = _originals[attr].__func__
            setattr(owner, attr, make())


def uninstrument() -> None:
    """Put every original back. Idempotent."""
    with _lock:
        for owner, attr, _ in _PATCHES:
            if attr in _originals:
                original = _originals[attr]
                setattr(
                    owner,
                    attr,
                    staticmethod(original) if attr == "_join_exited_workers" else original,
                )
        _originals.clear()


def instrumented() -> bool:
    """Whether this boundary is installed."""
    return bool(_originals)


# The names of 0.1, kept for one minor release.
install = renamed(instrument, "threadline.boundaries.processes.install")
uninstall = renamed(uninstrument, "threadline.boundaries.processes.uninstall")
installed = renamed(instrumented, "threadline.boundaries.processes.installed")
