"""The runtime: configure() and shutdown(), the one place that builds on the OpenTelemetry SDK.

The global tracer provider is set once, to a switchboard that forwards to the SDK provider of the
current configuration. Reconfiguring builds a fresh SDK provider and retires the old one, so
processors and exporters never stack, and tracers handed out earlier (to contrib
instrumentations, say) follow along. Settings are resolved by threadline._settings (pure); child
processes are configured by threadline._children; exit and SIGTERM by threadline._exit.

The SDK has no public way to remove a span processor or to swap a provider's processors, so
_retire(), _keep_open() and remove_tap() reach into ``TracerProvider._active_span_processor``:
this is why pyproject caps opentelemetry-sdk at the minor version the tests ran against.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import trace

from threadline._settings import Settings, env, export_url, resolve
from threadline._signals import sigterm_blocked

# The SDK is imported when configure() first runs: `import threadline` stays light.
if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from threadline._export import PendingAnnouncer

log = logging.getLogger("threadline")


class Runtime:
    """What one configure() call built. Replaced whole on reconfigure."""

    def __init__(
        self, settings: Settings, provider: TracerProvider, exporter: SpanExporter | None = None
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.exporter = exporter  # the user's own exporter instance, if one was given
        self.announcer: PendingAnnouncer | None = None
        self.child_base: dict[str, Any] | None = None  # settings.to_dict(), made once


_lock = threading.RLock()
_runtime: Runtime | None = None
_generation = 0  # bumps on every (re)configure and shutdown
_taps: list[SpanProcessor] = []  # processors that survive reconfiguration (the pytest fixture)
_closed: weakref.WeakSet[SpanExporter] = weakref.WeakSet()  # user exporters shutdown() closed
_installed_global = False
_atexit_registered = False
# threadline.instrumentation.ThreadlineInstrumentor: the boundaries trace through whatever
# provider is global (the user's own, opentelemetry-instrument's, Logfire's), not threadline's.
_borrowed = False
_on_configure: list[Callable[[Settings | None], None]] = []

# Taps watch the process that added them; a forked child must not feed its copy of them.
os.register_at_fork(after_in_child=_taps.clear)


def current() -> Runtime | None:
    """What the current configuration built, or None when threadline is not configured."""
    return _runtime


def borrow(on: bool) -> None:
    """Trace through the global provider someone else set up (True), or only once configure()
    has run (False): what ThreadlineInstrumentor turns on and off."""
    global _borrowed
    _borrowed = on


def enabled() -> bool:
    """Whether the boundaries carry context now: threadline is configured, or instrumented on
    top of another OpenTelemetry set-up."""
    return _runtime is not None or _borrowed


# -- the switchboard ---------------------------------------------------------------------------


class _SwitchTracer(trace.Tracer):
    """Forwards to the current configuration's tracer; re-resolves only after a reconfigure."""

    __slots__ = ("_key", "_gen", "_real")

    def __init__(self, key: tuple) -> None:
        self._key = key
        self._gen = -1
        self._real: trace.Tracer = trace.NoOpTracer()

    def real(self) -> trace.Tracer:
        """The current configuration's tracer (a no-op one when not configured)."""
        if self._gen != _generation:
            from threadline._tracer import lean_tracer

            rt = _runtime
            self._real = (
                lean_tracer(
                    rt.provider.get_tracer(
                        *self._key[:2], schema_url=self._key[2], attributes=self._key[3]
                    )
                )
                if rt
                else trace.NoOpTracer()
            )
            self._gen = _generation
        return self._real

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self.real().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        return self.real().start_as_current_span(*args, **kwargs)


class _SwitchProvider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _SwitchTracer(
            (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )

    # Let SDK-aware code (force_flush in tests, contrib helpers) reach the real provider.
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        shutdown()


_switch = _SwitchProvider()
_tracer = _SwitchTracer(("threadline", None, None, None))


_global_tracer: tuple[Any, trace.Tracer | None] = (None, None)  # (provider, its tracer)


def tracer() -> trace.Tracer:
    """The tracer threadline's own spans use. Before configure() it defers to the global provider,
    so a program that set up the SDK itself still gets its spans."""
    global _global_tracer
    if _runtime is None and not _installed_global:
        provider = trace.get_tracer_provider()
        cached_for, cached = _global_tracer
        if cached_for is not provider or cached is None:  # a tracer per provider, not per span
            cached = provider.get_tracer("threadline")
            _global_tracer = (provider, cached)
        return cached
    return _tracer.real()  # the switchboard's current tracer: one call less per span


# -- configure ---------------------------------------------------------------------------------


def _resource(s: Settings) -> Resource:
    import socket  # with the SDK, when configure() runs: not on `import threadline`'s path

    from threadline._tracer import OnceHashedResource
    from threadline._version import __version__

    attrs: dict[str, Any] = {
        "service.name": s.service_name,
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": ".".join(map(str, sys.version_info[:3])),
        "telemetry.distro.name": "threadline",
        "telemetry.distro.version": __version__,
    }
    if s.service_version:
        attrs["service.version"] = s.service_version
    if s.namespace:
        attrs["service.namespace"] = s.namespace
    if s.environment:
        # Semantic conventions renamed the key; write both so old and new backends group by it.
        attrs["deployment.environment.name"] = s.environment
        attrs["deployment.environment"] = s.environment
    attrs.update(s.resource_attributes)
    # Resource.create adds telemetry.sdk.* and OTEL_RESOURCE_ATTRIBUTES; explicit values win.
    created = OnceHashedResource.create(attrs)
    return OnceHashedResource(created.attributes, created.schema_url)


def _processors(
    s: Settings, exporter: SpanExporter | None
) -> tuple[list[SpanProcessor], PendingAnnouncer | None]:
    """The span processors for these settings, and the announcer of pending spans (a processor
    only when every span is announced; otherwise at hand for announce())."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from threadline._export import GuardedExporter, PendingAnnouncer, count_drops

    procs: list[SpanProcessor] = []
    announcer = None
    for name in s.exporter.split(","):
        if name == "console":
            from threadline._console import ConsoleTreeExporter

            procs.append(SimpleSpanProcessor(ConsoleTreeExporter()))
        elif name in ("otlp", "custom"):
            otlp = None
            if name == "otlp" or exporter is None:
                from threadline._otlp_exporter import OTLPExporter

                otlp = OTLPExporter(endpoint=export_url(s), timeout=5)
            real = cast("SpanExporter", otlp or exporter)
            guarded = GuardedExporter(real, export_url(s) if name == "otlp" else None)
            # A roomier queue than the SDK's 2048 absorbs bursts; $OTEL_BSP_MAX_QUEUE_SIZE rules.
            queue = None if env("OTEL_BSP_MAX_QUEUE_SIZE") else 8192
            if otlp is not None and otlp.sends_encoded():
                from threadline._otlp_processor import OTLPBatchProcessor

                bsp: SpanProcessor = OTLPBatchProcessor(guarded, max_queue_size=queue)
            else:
                bsp = BatchSpanProcessor(guarded, max_queue_size=queue)
                count_drops(bsp)
            announcer = PendingAnnouncer(guarded)
            procs.extend([announcer, bsp] if s.announce else [bsp])
    return procs, announcer


def configure(
    service_name: str | None = None,
    *,
    service_version: str | None = None,
    namespace: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    exporter: str | SpanExporter | None = None,
    sample_ratio: float | None = None,
    boundaries: bool = True,
    resource_attributes: Mapping[str, Any] | None = None,
    announce: bool | None = None,
    traces_endpoint: str | None = None,
) -> Settings:
    """Set up tracing for this process and return the resolved settings.

    Every argument left out falls back to its OTEL_* environment variable, then to a default. A
    bad environment value is logged, naming the variable, and the default used; a bad argument
    raises (TypeError / ValueError). Calling configure() again replaces the previous
    configuration: its ended spans are flushed first, and spans still open end in the new one.

    Args:
        service_name: the service.name resource attribute. Default: $OTEL_SERVICE_NAME, then
            service.name in $OTEL_RESOURCE_ATTRIBUTES, then ``unknown_service:<script name>``.
        service_version: service.version (default: $OTEL_RESOURCE_ATTRIBUTES' service.version).
        namespace: service.namespace (default: $OTEL_RESOURCE_ATTRIBUTES' service.namespace).
        environment: deployment.environment.name, written under the old key
            deployment.environment too (default: $OTEL_RESOURCE_ATTRIBUTES').
        endpoint: the OTLP/HTTP base URL; spans go to endpoint + "/v1/traces". Default:
            $OTEL_EXPORTER_OTLP_ENDPOINT, else http://127.0.0.1:4318.
        exporter: "otlp", "console", "none", "console,otlp" (several joined by commas), or a
            SpanExporter instance of your own. Default: $OTEL_TRACES_EXPORTER, else "otlp".
        sample_ratio: the share of new traces recorded, in [0, 1]; a span with a parent follows
            its parent's decision. Default: $OTEL_TRACES_SAMPLER / $OTEL_TRACES_SAMPLER_ARG,
            else 1.0.
        boundaries: install the stdlib boundaries (threads, asyncio, processes) so the trace
            follows work handed to them; False uninstalls those configure() installed.
        resource_attributes: more resource attributes; they win over the computed ones.
        announce: True exports a pending copy of every span as it starts, so work killed
            mid-span still shows; None (default) announces only the units of work a process may
            be killed in (each task a child process runs); False announces nothing.
        traces_endpoint: a full OTLP/HTTP traces URL, used as it is (default:
            $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT when no endpoint is given).
    """
    global _runtime, _generation, _installed_global, _atexit_registered
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    custom = exporter if isinstance(exporter, SpanExporter) else None
    named = exporter if not isinstance(exporter, SpanExporter) else None
    if custom is not None and _was_closed(custom):
        raise ValueError(
            "exporter: this SpanExporter instance was shut down by threadline.shutdown(); "
            "pass a new one"
        )
    s = resolve(
        service_name,
        service_version=service_version,
        namespace=namespace,
        environment=environment,
        endpoint=endpoint,
        exporter=named,
        custom_exporter=custom is not None,
        sample_ratio=sample_ratio,
        boundaries=boundaries,
        resource_attributes=resource_attributes,
        announce=announce,
        traces_endpoint=traces_endpoint,
    )
    provider = TracerProvider(  # shut down by shutdown(), registered with atexit once
        resource=_resource(s),
        sampler=ParentBased(TraceIdRatioBased(s.sample_ratio)),
        shutdown_on_exit=False,
    )
    with sigterm_blocked():  # the export threads started here never take SIGTERM
        procs, announcer = _processors(s, custom)
    for proc in procs:
        provider.add_span_processor(proc)
    for tap in _taps:
        provider.add_span_processor(tap)
    with _lock:
        old, _runtime = _runtime, Runtime(s, provider, custom)
        _runtime.announcer = announcer
        if old is not None and old.exporter is not None:
            # The user's exporter is flushed, not closed, when configure() moves on: they may
            # hand it in again (or it serves the new configuration already).
            _keep_open(old)
        _generation += 1
        if not _installed_global:
            trace.set_tracer_provider(_switch)
            if trace.get_tracer_provider() is not _switch:
                log.warning(
                    "threadline: another tracer provider was installed globally before configure(); "
                    "threadline's own spans use its configuration, other libraries keep theirs"
                )
            _installed_global = True
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
    if old is not None:
        _retire(old)
    # One W3C behaviour for every carrier: headers, handoffs across processes, nodes, brokers.
    from threadline import _w3c as w3c

    w3c.install()
    from threadline import boundaries as stdlib_boundaries  # the argument shadows the package

    if s.boundaries:
        stdlib_boundaries.instrument_defaults()
    else:
        stdlib_boundaries.uninstrument_defaults()
    for hook in list(_on_configure):
        hook(s)
    return s


def _was_closed(exporter: SpanExporter) -> bool:
    try:
        return exporter in _closed
    except TypeError:
        return False


# -- SDK surgery: the SDK has no public remover or replacer of span processors ------------------


def _keep_open(rt: Runtime) -> None:
    from threadline._export import GuardedExporter

    for proc in rt.provider._active_span_processor._span_processors:  # noqa: SLF001
        guard = getattr(proc, "span_exporter", None)
        if isinstance(guard, GuardedExporter):
            guard.keep_open = True


class _Successor:  # a SpanProcessor, in all but the SDK base class (imported only when configured)
    """Takes the place of a retired configuration's processors. A span still open when configure()
    ran again ends in the configuration current by then (keeping its own resource), so no span
    ended after a reconfigure is lost; one that ends after shutdown() is counted as dropped."""

    def on_start(self, span: SdkSpan, parent_context: Any = None) -> None:
        rt = _runtime
        if rt is not None:
            rt.provider._active_span_processor.on_start(span, parent_context)  # noqa: SLF001

    def _on_ending(self, span: SdkSpan) -> None:
        rt = _runtime
        if rt is not None:
            rt.provider._active_span_processor._on_ending(span)  # noqa: SLF001

    def on_end(self, span: ReadableSpan) -> None:
        rt = _runtime
        if rt is not None:
            rt.provider._active_span_processor.on_end(span)  # noqa: SLF001
        else:
            from threadline._export import stats

            stats.drop(1, "ended_after_shutdown")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_successor = _Successor()


def _retire(rt: Runtime) -> None:
    # Spans still open end through the successor from now on; the old processors flush what
    # has ended and close. The taps belong to the next provider too: they stay open.
    proc = rt.provider._active_span_processor  # noqa: SLF001
    own = [p for p in proc._span_processors if p not in _taps]  # noqa: SLF001
    proc._span_processors = (_successor,)  # type: ignore[assignment]  # noqa: SLF001
    for p in own:
        try:
            p.shutdown()
        except Exception:  # tracing never breaks the program
            log.debug("threadline: span processor shutdown failed", exc_info=True)


def adopt(spans: Iterable[trace.Span]) -> None:
    """Spans still open take the current configuration's resource: they end and report as this
    process is configured now (a child renamed by its target reports its run span under the new
    service name). Spans of another SDK, or already ended, are left as they are."""
    rt = _runtime
    if rt is None:
        return
    resource = rt.provider.resource
    for span in spans:
        if span.is_recording() and hasattr(span, "_resource"):
            span._resource = resource  # type: ignore[attr-defined]  # noqa: SLF001 - no public setter


# -- the rest of the lifecycle -----------------------------------------------------------------


def settings() -> Settings | None:
    """The active settings, or None when threadline is not configured."""
    rt = _runtime
    return rt.settings if rt else None


def flush(timeout: float = 30.0) -> bool:
    """Export every ended span now.

    Args:
        timeout: seconds to wait for the exporters at most.

    Returns True when every ended span was handed to the exporter in time (and when threadline
    is not configured: there is nothing to flush). Instrumented on top of another set-up
    (ThreadlineInstrumentor), it flushes the global provider.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    rt = _runtime
    if rt is not None:
        return rt.provider.force_flush(int(timeout * 1000))
    if _borrowed:
        return _flush_global(timeout)
    return True


def _flush_global(timeout: float) -> bool:
    """force_flush() of the global provider, whoever set it up (the API's own has none)."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is None:
        return True
    try:
        done = force_flush(int(timeout * 1000))
    except Exception:  # tracing never breaks the program
        log.debug("threadline: the global provider's force_flush failed", exc_info=True)
        return False
    return done is not False  # some providers answer None


def shutdown() -> None:
    """Flush and stop. Idempotent; spans started afterwards are not recorded."""
    global _runtime, _generation
    with _lock:
        old, _runtime = _runtime, None
        _generation += 1
    if old is not None:
        _retire(old)
        if old.exporter is not None:
            try:
                _closed.add(old.exporter)
            except TypeError:  # not weakly referenceable: reuse is simply not caught
                pass
        for hook in list(_on_configure):
            hook(None)
        from threadline._export import stats

        stats.report()


def add_tap(processor: SpanProcessor) -> None:
    """Attach a processor that stays across reconfiguration (used by the pytest fixture)."""
    with _lock:
        _taps.append(processor)
        if _runtime is not None:
            _runtime.provider.add_span_processor(processor)


def remove_tap(processor: SpanProcessor) -> None:
    """Detach a processor add_tap() attached (a no-op for one it did not)."""
    with _lock:
        if processor in _taps:
            _taps.remove(processor)
        if _runtime is not None:
            proc = _runtime.provider._active_span_processor  # noqa: SLF001
            proc._span_processors = tuple(p for p in proc._span_processors if p is not processor)  # noqa: SLF001


def announce(span: trace.Span) -> None:
    """Export a pending copy of a span that has just started, now (docs/internals.md): for the
    units of work a process may be killed in. Only with the default announce=None: True has
    announced every span already, False wants none. A no-op when nothing is exported, or for a
    span that is not recorded."""
    rt = _runtime
    if (
        rt is not None
        and rt.announcer is not None
        and rt.settings.announce is None
        and span.is_recording()
    ):
        rt.announcer.on_start(span)  # type: ignore[arg-type]  # a recording span is the SDK's


def on_configure(hook: Callable[[Settings | None], None]) -> None:
    """Call hook(settings) after every configure() and hook(None) after shutdown()."""
    _on_configure.append(hook)
