"""Settings resolution: configure()'s arguments and the OTEL_* environment -> a frozen Settings.

Pure: it reads the environment and the arguments, checks them and returns plain values; it builds
nothing and imports no part of the OpenTelemetry SDK, so it can be tested (and a child process's
settings compared) without one. The rules, in order of precedence:

- an explicit argument wins, and a bad one raises at the call site (TypeError / ValueError);
- else its OTEL_* environment variable: environment values are the deployment's, not the
  program's, so a bad one is logged, naming the variable, and the default stands (the OTel
  specification's rule for environment configuration);
- else the default: exporter "otlp" to DEFAULT_ENDPOINT, every trace sampled, the service named
  after the program (``unknown_service:<script>``), as the OTel SDK names it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

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
        """The settings as configure() keyword arguments (how a child process receives them)."""
        return asdict(self)


def env(name: str) -> str | None:
    """An environment variable's value, stripped; None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_resource() -> dict[str, str]:
    """$OTEL_RESOURCE_ATTRIBUTES as a dict (``key=value,...``, values percent-decoded)."""
    from urllib.parse import unquote  # not on `import threadline`'s path

    out: dict[str, str] = {}
    for item in (env("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())  # W3C baggage format: percent-encoded
    return out


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _env_url(name: str) -> str | None:
    raw = env(name)
    if raw is not None and not _is_url(raw):
        log.warning(
            "threadline: ignoring %s=%r: not an http(s) URL such as %r", name, raw, DEFAULT_ENDPOINT
        )
        return None
    return raw


def _env_exporter() -> str:
    raw = env("OTEL_TRACES_EXPORTER")
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
    raw = env("OTEL_TRACES_SAMPLER")
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
    arg = env("OTEL_TRACES_SAMPLER_ARG")
    if arg is None:
        return 1.0
    try:
        parsed: float | None = float(arg)
    except ValueError:
        parsed = None
    if parsed is None or not 0.0 <= parsed <= 1.0:
        log.warning(
            "threadline: ignoring OTEL_TRACES_SAMPLER_ARG=%r: not a number in [0, 1]; sampling "
            "every trace",
            arg,
        )
        return 1.0
    return parsed


def _default_service_name() -> str:
    main = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    main = main.removesuffix(".py")
    return f"unknown_service:{main or 'python'}"


def resolve(
    service_name: str | None = None,
    *,
    service_version: str | None = None,
    namespace: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    exporter: str | None = None,
    custom_exporter: bool = False,
    sample_ratio: float | None = None,
    boundaries: bool = True,
    resource_attributes: Mapping[str, Any] | None = None,
    announce: bool | None = None,
    traces_endpoint: str | None = None,
) -> Settings:
    """The Settings for configure()'s arguments in the current environment.

    Each argument is configure()'s of the same name, except `exporter`, which is only ever a
    string here (or None: $OTEL_TRACES_EXPORTER, else "otlp"): when the user handed configure() a
    SpanExporter instance, the caller checks it and passes custom_exporter=True instead, and the
    settings say exporter="custom". Raises TypeError / ValueError for a bad argument; logs and
    ignores a bad environment value.
    """
    env_res = env_resource()
    if custom_exporter:
        exporter_name = "custom"
    elif exporter is None:
        exporter_name = _env_exporter()
    elif isinstance(exporter, str):
        exporter_name = _exporter_names(exporter)
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
        or env("OTEL_SERVICE_NAME")
        or env_res.get("service.name")
        or _default_service_name(),
        service_version=service_version or env_res.get("service.version"),
        namespace=namespace or env_res.get("service.namespace"),
        environment=(
            environment
            or env_res.get("deployment.environment.name")
            or env_res.get("deployment.environment")
        ),
        endpoint=endpoint.rstrip("/"),
        traces_endpoint=traces_endpoint,
        exporter=exporter_name,
        sample_ratio=float(sample_ratio),
        boundaries=boundaries,
        resource_attributes=dict(resource_attributes or {}),
        announce=announce,
    )


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a base endpoint (a full .../v1/traces URL is kept as it is)."""
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def export_url(s: Settings) -> str:
    """Where these settings export spans to over OTLP/HTTP."""
    return s.traces_endpoint or traces_url(s.endpoint)
