"""configure() and shutdown(): the one place that touches the OpenTelemetry SDK.

The global tracer provider is set once, to a switchboard that forwards to the SDK provider of the
current configuration. Reconfiguring builds a fresh SDK provider and retires the old one, so
processors and exporters never stack, and tracers handed out earlier (to contrib
instrumentations, say) follow along.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from opentelemetry import trace

if (
    TYPE_CHECKING
):  # the SDK is imported when configure() first runs: `import threadline` stays light
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from threadline._export import PendingAnnouncer

log = logging.getLogger("threadline")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
EXPORTERS = ("otlp", "console", "none")


@dataclass(frozen=True)
class Settings:
    """The resolved configuration: plain values, so a child process can be configured alike."""

    service_name: str
    service_version: str | None = None
    namespace: str | None = None
    environment: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    # The full OTLP/HTTP traces URL, used as it is ($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); None
    # exports to endpoint + "/v1/traces".
    traces_endpoint: str | None = None
    # "otlp", "console", "none", or several joined by commas ("console,otlp"); "custom" when the
    # user passed a SpanExporter instance.
    exporter: str = "otlp"
    sample_ratio: float = 1.0
    boundaries: bool = True
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    # Pending copies exported as spans start (docs/internals.md): True every span, None (default)
    # the units of work a process may be killed in (a child's tasks), False none.
    announce: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Runtime:
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
_runtime: _Runtime | None = None
_generation = 0  # bumps on every (re)configure and shutdown
_taps: list[SpanProcessor] = []  # processors that survive reconfiguration (the pytest fixture)
_closed: weakref.WeakSet[SpanExporter] = weakref.WeakSet()  # user exporters shutdown() closed
_installed_global = False
_atexit_registered = False
_on_configure: list[Callable[[Settings | None], None]] = []
# What child processes are configured with instead of this process's own values.
_child_overrides: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None

# Taps watch the process that added them; a forked child must not feed its copy of them.
os.register_at_fork(after_in_child=_taps.clear)


# -- the switchboard ---------------------------------------------------------------------------


class _SwitchTracer(trace.Tracer):
    """Forwards to the current configuration's tracer; re-resolves only after a reconfigure."""

    __slots__ = ("_key", "_gen", "_real")

    def __init__(self, key: tuple) -> None:
        self._key = key
        self._gen = -1
        self._real: trace.Tracer = trace.NoOpTracer()

    def _tracer(self) -> trace.Tracer:
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
        return self._tracer().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        return self._tracer().start_as_current_span(*args, **kwargs)


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


def tracer() -> trace.Tracer:
    """The tracer threadline's own spans use. Before configure() it defers to the global provider,
    so a program that set up the SDK itself still gets its spans."""
    if _runtime is None and not _installed_global:
        return trace.get_tracer("threadline")
    return _tracer._tracer()  # the switchboard's current tracer: one call less per span


# -- configure ---------------------------------------------------------------------------------


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _env_resource() -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (_env("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())  # W3C baggage format: percent-encoded
    return out


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


# Environment values are the deployment's, not the program's: a bad one is logged, naming the
# variable, and the default stands (the OTel spec's rule for environment configuration).


def _env_url(name: str) -> str | None:
    raw = _env(name)
    if raw is not None and not _is_url(raw):
        log.warning(
            "threadline: ignoring %s=%r: not an http(s) URL such as %r", name, raw, DEFAULT_ENDPOINT
        )
        return None
    return raw


def _env_exporter() -> str:
    raw = _env("OTEL_TRACES_EXPORTER")
    if raw is None:
        return "otlp"
    names: list[str] = []
    for name in raw.lower().replace(" ", "").split(","):
        if name in EXPORTERS:
            if name not in names:
                names.append(name)
        elif name:
            log.warning(
                "threadline: ignoring %r in OTEL_TRACES_EXPORTER=%r: threadline exports to %s",
                name,
                raw,
                ", ".join(map(repr, EXPORTERS)),
            )
    if "none" in names and len(names) > 1:
        log.warning("threadline: ignoring 'none' in OTEL_TRACES_EXPORTER=%r: others are named", raw)
        names.remove("none")
    if not names:
        log.warning("threadline: OTEL_TRACES_EXPORTER=%r names no exporter; using 'otlp'", raw)
        return "otlp"
    return ",".join(names)


def _exporter_names(exporter: str) -> str:
    """An explicit exporter string, checked: one name, or several joined by commas."""
    names = [name.strip().lower() for name in exporter.split(",")]
    if not names or any(n not in EXPORTERS for n in names) or ("none" in names and len(names) > 1):
        raise ValueError(
            f"exporter must be one of {', '.join(map(repr, EXPORTERS))} (or several of the first "
            f"two joined by commas) or a SpanExporter instance, not {exporter!r}"
        )
    return ",".join(dict.fromkeys(names))


# OTEL_TRACES_SAMPLER values on threadline's one sampler, parent-based by trace-id ratio: the
# ratio each stands for (None: the ratio is OTEL_TRACES_SAMPLER_ARG).
_SAMPLERS: dict[str, float | None] = {
    "parentbased_always_on": 1.0,
    "parentbased_always_off": 0.0,
    "parentbased_traceidratio": None,
    "always_on": 1.0,
    "always_off": 0.0,
    "traceidratio": None,
}


def _env_sample_ratio() -> float:
    raw = _env("OTEL_TRACES_SAMPLER")
    sampler = (raw or "parentbased_traceidratio").lower()
    if sampler not in _SAMPLERS:
        log.warning(
            "threadline: ignoring OTEL_TRACES_SAMPLER=%r (and its argument): threadline samples "
            "parent-based by trace-id ratio and takes %s; sampling every trace",
            raw,
            ", ".join(_SAMPLERS),
        )
        return 1.0
    if not sampler.startswith("parentbased_"):
        log.warning(
            "threadline: OTEL_TRACES_SAMPLER=%r is applied as 'parentbased_%s': a span with a "
            "parent follows the parent's sampling decision",
            raw,
            sampler,
        )
    ratio = _SAMPLERS[sampler]
    if ratio is not None:
        return ratio
    # threadline's default sampler is parentbased_traceidratio, so the ratio alone is honoured.
    arg = _env("OTEL_TRACES_SAMPLER_ARG")
    if arg is None:
        return 1.0
    try:
        ratio = float(arg)
    except ValueError:
        ratio = None
    if ratio is None or not 0.0 <= ratio <= 1.0:
        log.warning(
            "threadline: ignoring OTEL_TRACES_SAMPLER_ARG=%r: not a number in [0, 1]; sampling "
            "every trace",
            arg,
        )
        return 1.0
    return ratio


def _default_service_name() -> str:
    main = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    main = main.removesuffix(".py")
    return f"unknown_service:{main or 'python'}"


def _resolve(
    service_name: str | None,
    service_version: str | None,
    namespace: str | None,
    environment: str | None,
    endpoint: str | None,
    exporter: str | SpanExporter | None,
    sample_ratio: float | None,
    boundaries: bool,
    resource_attributes: Mapping[str, Any] | None,
    announce: bool | None = None,
    traces_endpoint: str | None = None,
) -> Settings:
    env_res = _env_resource()
    if exporter is None:
        exporter_name = _env_exporter()
    elif isinstance(exporter, str):
        exporter_name = _exporter_names(exporter)
    elif isinstance(exporter, _sdk_exporter()):
        if _was_closed(exporter):
            raise ValueError(
                "exporter: this SpanExporter instance was shut down by threadline.shutdown(); "
                "pass a new one"
            )
        exporter_name = "custom"
    else:
        raise TypeError(
            f"exporter must be a string or a SpanExporter instance, not {type(exporter).__name__}"
        )
    if sample_ratio is None:
        sample_ratio = _env_sample_ratio()
    if isinstance(sample_ratio, bool) or not isinstance(sample_ratio, int | float):
        raise TypeError(f"sample_ratio must be a number in [0, 1], not {sample_ratio!r}")
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be in [0, 1], not {sample_ratio!r}")
    for arg, value in (("endpoint", endpoint), ("traces_endpoint", traces_endpoint)):
        if value is not None and not _is_url(value):
            raise ValueError(
                f"{arg} must be an http(s) URL such as {DEFAULT_ENDPOINT!r}, not {value!r}"
            )
    # Explicit before environment; of the two variables the traces one wins, used as it is.
    if endpoint is None and traces_endpoint is None:
        traces_endpoint = _env_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if endpoint is None:
        endpoint = _env_url("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ValueError(f"service_name must be a non-empty string, not {service_name!r}")
    for arg, value in (
        ("service_version", service_version),
        ("namespace", namespace),
        ("environment", environment),
    ):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{arg} must be a string, not {value!r}")
    if not isinstance(boundaries, bool):
        raise TypeError(f"boundaries must be True or False, not {boundaries!r}")
    if announce is not None and not isinstance(announce, bool):
        raise TypeError(f"announce must be True, False or None, not {announce!r}")
    if resource_attributes is not None and not isinstance(resource_attributes, Mapping):
        raise TypeError(
            f"resource_attributes must be a mapping of names to values, not {resource_attributes!r}"
        )
    return Settings(
        service_name=service_name
        or _env("OTEL_SERVICE_NAME")
        or env_res.get("service.name")
        or _default_service_name(),
        service_version=service_version or env_res.get("service.version"),
        namespace=namespace or env_res.get("service.namespace"),
        environment=environment
        or env_res.get("deployment.environment.name")
        or env_res.get("deployment.environment"),
        endpoint=endpoint.rstrip("/"),
        traces_endpoint=traces_endpoint,
        exporter=exporter_name,
        sample_ratio=float(sample_ratio),
        boundaries=boundaries,
        resource_attributes=dict(resource_attributes or {}),
        announce=announce,
    )


def _sdk_exporter() -> type:
    from opentelemetry.sdk.trace.export import SpanExporter

    return SpanExporter


def _resource(s: Settings) -> Resource:
    from threadline import __version__
    from threadline._tracer import OnceHashedResource

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


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP signal URL for a base endpoint (a full .../v1/traces URL is kept as it is)."""
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def export_url(s: Settings) -> str:
    """Where these settings export spans to over OTLP/HTTP."""
    return s.traces_endpoint or traces_url(s.endpoint)


def _processors(
    s: Settings, exporter: str | SpanExporter
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
            if name == "otlp":
                from threadline._otlp_exporter import OTLPExporter

                real: SpanExporter = OTLPExporter(endpoint=export_url(s), timeout=5)
            else:
                real = exporter  # type: ignore[assignment]
            guarded = GuardedExporter(real, export_url(s) if name == "otlp" else None)
            # A roomier queue than the SDK's 2048 absorbs bursts; $OTEL_BSP_MAX_QUEUE_SIZE rules.
            queue = None if _env("OTEL_BSP_MAX_QUEUE_SIZE") else 8192
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

    Every argument left out falls back to its OTEL_* environment variable, then to a default:
    exporter "otlp" to http://127.0.0.1:4318, sample_ratio 1.0. A bad environment value is
    logged, naming the variable, and the default used; a bad argument raises. `endpoint` is the
    OTLP/HTTP base URL (spans go to endpoint + "/v1/traces"); `traces_endpoint` a full traces URL
    used as it is ($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Calling it again replaces the
    previous configuration (its spans are flushed first). announce=True exports a pending copy of
    every span as it starts, so work killed mid-span still shows; by default (None) only the units
    of work a process may be killed in are announced (each task a child process runs); False
    announces nothing.
    """
    global _runtime, _generation, _installed_global, _atexit_registered
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    s = _resolve(
        service_name, service_version, namespace, environment, endpoint, exporter,
        sample_ratio, boundaries, resource_attributes, announce, traces_endpoint,
    )  # fmt: skip
    provider = TracerProvider(  # shut down by shutdown(), registered with atexit once
        resource=_resource(s),
        sampler=ParentBased(TraceIdRatioBased(s.sample_ratio)),
        shutdown_on_exit=False,
    )
    from threadline import _exit

    with _exit.sigterm_blocked():  # the export threads started here never take SIGTERM
        procs, announcer = _processors(s, exporter if exporter is not None else s.exporter)
    for proc in procs:
        provider.add_span_processor(proc)
    for tap in _taps:
        provider.add_span_processor(tap)
    with _lock:
        custom = exporter if isinstance(exporter, _sdk_exporter()) else None
        old, _runtime = _runtime, _Runtime(s, provider, custom)
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
    from threadline import boundaries

    if s.boundaries:
        boundaries.install_defaults()
    else:
        boundaries.uninstall_defaults()
    for hook in list(_on_configure):
        hook(s)
    return s


def _was_closed(exporter: SpanExporter) -> bool:
    try:
        return exporter in _closed
    except TypeError:
        return False


def _keep_open(rt: _Runtime) -> None:
    from threadline._export import GuardedExporter

    for proc in rt.provider._active_span_processor._span_processors:  # noqa: SLF001
        guard = getattr(proc, "span_exporter", None)
        if isinstance(guard, GuardedExporter):
            guard.keep_open = True


class _Successor:  # a SpanProcessor, in all but the SDK base class (imported only when configured)
    """Takes the place of a retired configuration's processors. A span still open when configure()
    ran again ends in the configuration current by then (keeping its own resource), so no span
    ended after a reconfigure is lost; one that ends after shutdown() is counted as dropped."""

    def on_start(self, span, parent_context=None) -> None:
        rt = _runtime
        if rt is not None:
            rt.provider._active_span_processor.on_start(span, parent_context)  # noqa: SLF001

    def _on_ending(self, span) -> None:
        rt = _runtime
        if rt is not None:
            rt.provider._active_span_processor._on_ending(span)  # noqa: SLF001

    def on_end(self, span) -> None:
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


def _retire(rt: _Runtime) -> None:
    # Spans still open end through the successor from now on; the old processors flush what
    # has ended and close. The taps belong to the next provider too: they stay open.
    proc = rt.provider._active_span_processor  # noqa: SLF001 - the SDK has no public remover
    own = [p for p in proc._span_processors if p not in _taps]  # noqa: SLF001
    proc._span_processors = (_successor,)  # noqa: SLF001
    for p in own:
        try:
            p.shutdown()
        except Exception:  # noqa: BLE001 - tracing never breaks the program
            log.debug("threadline: span processor shutdown failed", exc_info=True)


def settings() -> Settings | None:
    """The active settings, or None when threadline is not configured."""
    rt = _runtime
    return rt.settings if rt else None


def flush(timeout: float = 30.0) -> bool:
    """Export every ended span now. True when all were handed to the exporter in time."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    rt = _runtime
    if rt is None:
        return True
    return rt.provider.force_flush(int(timeout * 1000))


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
    with _lock:
        if processor in _taps:
            _taps.remove(processor)
        if _runtime is not None:
            proc = _runtime.provider._active_span_processor  # noqa: SLF001
            proc._span_processors = tuple(p for p in proc._span_processors if p is not processor)


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
        rt.announcer.on_start(span)


def children(overrides: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None) -> None:
    """Configure child processes with these configure() arguments instead of this process's own
    (a mapping, or a callable returning one when a child starts); None restores the default."""
    global _child_overrides
    if overrides is not None and not callable(overrides):
        bad = set(overrides) - set(Settings.__dataclass_fields__)
        if bad:
            raise ValueError(
                f"unknown configure() argument(s) for children: {', '.join(sorted(bad))}"
            )
        overrides = dict(overrides)
    _child_overrides = overrides


def child_settings() -> dict[str, Any] | None:
    """configure() arguments for a child process started now, or None when not configured.

    Same exporter, endpoint and service; the resource names this process as the parent. A custom
    SpanExporter instance cannot travel, so such children export OTLP to the configured endpoint.
    """
    rt = _runtime
    if rt is None:
        return None
    if rt.child_base is None:
        rt.child_base = rt.settings.to_dict()
    out = dict(rt.child_base)
    if out["exporter"] == "custom":
        out["exporter"] = "otlp"
    overrides = _child_overrides() if callable(_child_overrides) else _child_overrides
    if overrides and "endpoint" in overrides and "traces_endpoint" not in overrides:
        out["traces_endpoint"] = None  # a new endpoint for the children replaces the traces URL
    out.update(overrides or {})
    out["resource_attributes"] = {**out["resource_attributes"], "process.parent_pid": os.getpid()}
    return out


def on_configure(hook: Callable[[Settings | None], None]) -> None:
    """Call hook(settings) after every configure() and hook(None) after shutdown()."""
    _on_configure.append(hook)
