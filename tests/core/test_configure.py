import logging
import os
import socket
import subprocess
import sys
import threading

import pytest
from http_receiver import Receiver
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from threadline import _settings, seam
from threadline.testing.collector import Collector


@pytest.fixture(autouse=True)
def restore():
    yield
    tl.configure("tests", exporter="none")


def test_resource_attributes(finished):
    exporter = InMemorySpanExporter()
    s = tl.configure(
        "checkout",
        service_version="1.2.3",
        namespace="shop",
        environment="staging",
        exporter=exporter,
        resource_attributes={"team": "payments"},
    )
    assert s.service_name == "checkout" and s.exporter == "custom"
    with tl.span("work"):
        pass
    (span,) = finished(exporter)
    res = span.resource.attributes
    assert res["service.name"] == "checkout"
    assert res["service.version"] == "1.2.3"
    assert res["service.namespace"] == "shop"
    assert res["deployment.environment.name"] == "staging"
    assert res["host.name"] == socket.gethostname()
    assert res["process.pid"] == os.getpid()
    assert res["telemetry.sdk.name"] == "opentelemetry"
    assert res["telemetry.sdk.language"] == "python"
    assert res["telemetry.distro.name"] == "threadline"
    assert res["team"] == "payments"


OTEL_VARS = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture
def env(monkeypatch):
    """A clean OTEL_* environment; env(NAME=value, ...) sets variables."""
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_service_name_precedence(env, finished):
    memory = InMemorySpanExporter()
    assert tl.configure(exporter=memory).service_name.startswith("unknown_service:")
    env(OTEL_RESOURCE_ATTRIBUTES="service.name=from%20resource,team=a")
    assert tl.configure(exporter=memory).service_name == "from resource"
    env(OTEL_SERVICE_NAME="from-env")  # wins over OTEL_RESOURCE_ATTRIBUTES
    assert tl.configure(exporter=memory).service_name == "from-env"
    assert tl.configure("explicit", exporter=memory).service_name == "explicit"
    with tl.span("work"):
        pass
    (span,) = finished(memory)
    assert span.resource.attributes["service.name"] == "explicit"
    assert span.resource.attributes["team"] == "a"


def test_exporter_precedence(env):
    assert tl.configure("x").exporter == "otlp"
    env(OTEL_TRACES_EXPORTER="console")
    assert tl.configure("x").exporter == "console"
    assert tl.configure("x", exporter="none").exporter == "none"
    env(OTEL_TRACES_EXPORTER=" Console , otlp,console")  # a list: both, once each
    assert tl.configure("x").exporter == "console,otlp"


def test_endpoint_precedence(env):
    def urls():
        s = tl.configure("x", exporter="none")
        return s.endpoint, _settings.export_url(s)

    assert urls() == ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces")
    env(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/base/")  # a base: /v1/traces added
    assert urls() == ("http://collector:4318/base", "http://collector:4318/base/v1/traces")
    env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://traces:9999/custom")  # used as it is; wins
    assert urls() == ("http://collector:4318/base", "http://traces:9999/custom")
    s = tl.configure("x", exporter="none", endpoint="http://explicit:1234")  # explicit wins
    assert (s.endpoint, _settings.export_url(s)) == (
        "http://explicit:1234",
        "http://explicit:1234/v1/traces",
    )
    s = tl.configure("x", exporter="none", traces_endpoint="http://explicit:1234/t")
    assert (s.endpoint, _settings.export_url(s)) == (
        "http://collector:4318/base",
        "http://explicit:1234/t",
    )


def test_sample_ratio_precedence(env):
    assert tl.configure("x", exporter="none").sample_ratio == 1.0
    env(OTEL_TRACES_SAMPLER_ARG="0.25")  # the default sampler is parentbased_traceidratio
    assert tl.configure("x", exporter="none").sample_ratio == 0.25
    assert tl.configure("x", exporter="none", sample_ratio=0.5).sample_ratio == 0.5
    env(OTEL_TRACES_SAMPLER="parentbased_always_off")
    assert tl.configure("x", exporter="none").sample_ratio == 0.0
    assert tl.configure("x", exporter="none", sample_ratio=0.5).sample_ratio == 0.5


@pytest.mark.parametrize(
    ("sampler", "arg", "ratio", "warning"),
    [
        ("parentbased_always_on", "0.1", 1.0, None),
        ("parentbased_always_off", None, 0.0, None),
        ("parentbased_traceidratio", "0.25", 0.25, None),
        ("PARENTBASED_TRACEIDRATIO", None, 1.0, None),
        (
            "always_on",
            None,
            1.0,
            "OTEL_TRACES_SAMPLER='always_on' is applied as 'parentbased_always_on'",
        ),
        ("always_off", None, 0.0, "is applied as 'parentbased_always_off'"),
        ("traceidratio", "0.5", 0.5, "is applied as 'parentbased_traceidratio'"),
        ("jaeger_remote", "0.5", 1.0, "ignoring OTEL_TRACES_SAMPLER='jaeger_remote'"),
    ],
)
def test_otel_traces_sampler_maps_onto_the_parent_based_ratio_sampler(
    env, caplog, sampler, arg, ratio, warning
):
    env(OTEL_TRACES_SAMPLER=sampler, **({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {}))
    caplog.set_level(logging.WARNING, logger="threadline")
    assert tl.configure("x", exporter="none").sample_ratio == ratio
    messages = [r.getMessage() for r in caplog.records]
    if warning is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warning in messages[0]


@pytest.mark.parametrize(
    ("variable", "value", "field", "default", "warning"),
    [
        ("OTEL_TRACES_SAMPLER_ARG", "2", "sample_ratio", 1.0, "not a number in [0, 1]"),
        ("OTEL_TRACES_SAMPLER_ARG", "half", "sample_ratio", 1.0, "not a number in [0, 1]"),
        ("OTEL_TRACES_SAMPLER_ARG", "nan", "sample_ratio", 1.0, "not a number in [0, 1]"),
        ("OTEL_TRACES_EXPORTER", "jaeger", "exporter", "otlp", "ignoring 'jaeger' in"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "endpoint", "http://127.0.0.1:4318",
         "not an http(s) URL"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "localhost:4318/v1/traces", "traces_endpoint",
         None, "not an http(s) URL"),
    ],
)  # fmt: skip
def test_bad_environment_values_warn_naming_the_variable_and_keep_the_default(
    env, caplog, variable, value, field, default, warning
):
    env(**{variable: value})
    caplog.set_level(logging.WARNING, logger="threadline")
    s = tl.configure("x")
    assert getattr(s, field) == default
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{variable}={value!r}" in m and warning in m for m in messages), messages


def test_an_exporter_list_keeps_the_names_it_knows(env, caplog):
    env(OTEL_TRACES_EXPORTER="zipkin,console")
    caplog.set_level(logging.WARNING, logger="threadline")
    assert tl.configure("x").exporter == "console"
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        "threadline: ignoring 'zipkin' in OTEL_TRACES_EXPORTER='zipkin,console'"
    )


@pytest.mark.parametrize(
    ("variables", "path"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "{base}/base"}, "/base/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{base}/custom/traces"}, "/custom/traces"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "{base}/generic",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{base}/specific",
            },
            "/specific",
        ),
    ],
)
def test_spans_reach_the_url_the_otlp_variables_name(env, variables, path):
    with Receiver() as server:
        env(**{k: v.format(base=server.base) for k, v in variables.items()})
        tl.configure("x", announce=False)
        with tl.span("work"):
            pass
        assert tl.flush()
    assert server.paths == [path]


def run_exporting(code: str, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run `code` in a fresh interpreter with no OTEL_* variables but `env`; `{endpoint}` in
    either is a local collector's. Returns the finished process and the spans it received."""
    received: list = []
    collector = Collector(received.extend)
    collector.start()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update({k: v.format(endpoint=collector.endpoint) for k, v in env.items()})
    try:
        out = subprocess.run(
            [sys.executable, "-c", code.format(endpoint=collector.endpoint)],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        collector.stop()
    return out, received


def test_console_and_otlp_from_the_environment_both_export():
    out, received = run_exporting(
        "import threadline as tl; tl.configure('both')\nwith tl.span('work'): pass\n",
        OTEL_TRACES_EXPORTER="console,otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT="{endpoint}",
    )
    assert out.returncode == 0, out.stderr
    assert "service=both" in out.stdout and "work" in out.stdout
    assert [s.name for s in received] == ["work"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"exporter": "zipkin"}, ValueError, "exporter must be one of"),
        ({"exporter": "console,zipkin"}, ValueError, "exporter must be one of"),
        ({"exporter": "none,otlp"}, ValueError, "exporter must be one of"),
        ({"traces_endpoint": "x:4318"}, ValueError, "traces_endpoint must be an http(s) URL"),
        ({"exporter": 3}, TypeError, "exporter must be a string or a SpanExporter"),
        ({"sample_ratio": 1.5}, ValueError, "sample_ratio must be in [0, 1]"),
        ({"sample_ratio": "half"}, TypeError, "sample_ratio must be a number"),
        ({"endpoint": "127.0.0.1:4318"}, ValueError, "endpoint must be an http(s) URL"),
        ({"service_name": ""}, ValueError, "service_name must be a non-empty string"),
        ({"service_version": 3}, TypeError, "service_version must be a string, not 3"),
        ({"environment": ["prod"]}, TypeError, "environment must be a string, not ['prod']"),
        ({"boundaries": "threads"}, TypeError, "boundaries must be True or False, not 'threads'"),
        ({"announce": "yes"}, TypeError, "announce must be True, False or None, not 'yes'"),
        ({"resource_attributes": "a=1"}, TypeError, "resource_attributes must be a mapping"),
    ],
)
def test_bad_arguments_raise_clearly(kwargs, error, message):
    before = tl.settings()
    with pytest.raises(
        error,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        tl.configure(**kwargs)
    assert tl.settings() == before  # a refused configure changes nothing


def test_reconfigure_never_stacks_exporters():
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    tl.configure("a", exporter=first)
    with tl.span("one"):
        pass
    tl.configure("b", exporter=second)
    tl.configure("b", exporter=second)
    with tl.span("two"):
        pass
    tl.flush()
    assert [s.name for s in first.get_finished_spans()] == ["one"]  # flushed at reconfigure
    assert [s.name for s in second.get_finished_spans()] == ["two"]  # exactly once
    assert second.get_finished_spans()[0].resource.attributes["service.name"] == "b"


def test_tracers_handed_out_earlier_follow_reconfigure(finished):
    early = trace.get_tracer("some.contrib.instrumentation")
    exporter = InMemorySpanExporter()
    tl.configure("late", exporter=exporter)
    with early.start_as_current_span("from-contrib"):
        pass
    (span,) = finished(exporter)
    assert span.name == "from-contrib"
    assert span.instrumentation_scope.name == "some.contrib.instrumentation"


def test_shutdown_is_idempotent_and_stops_recording():
    exporter = InMemorySpanExporter()
    tl.configure("x", exporter=exporter)
    with tl.span("before"):
        pass
    tl.shutdown()
    tl.shutdown()
    assert tl.settings() is None
    with tl.span("after") as s:
        assert not s.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["before"]


def test_sampling_ratio_zero_records_nothing(finished):
    exporter = InMemorySpanExporter()
    tl.configure("s", exporter=exporter, sample_ratio=0.0)
    with tl.span("dropped") as s:
        assert not s.is_recording()
        assert not s.get_span_context().trace_flags.sampled
        h = tl.capture()
    assert h and not h.sampled
    with tl.resume(h, "child of unsampled") as child:
        assert not child.is_recording()
    assert finished(exporter) == ()


def test_unreachable_endpoint_is_logged_once_and_counted(caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tl.configure("offline", endpoint=f"http://127.0.0.1:{port}")
    from threadline import _export

    _export.stats.reset()
    caplog.set_level(logging.WARNING, logger="threadline")
    for _ in range(2):
        with tl.span("lost"):
            pass
        tl.flush()
    stats = tl.export_stats()
    assert stats["failed"] == 2 and stats["exported"] == 0
    warnings = [r for r in caplog.records if "could not export" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 span(s)" in warnings[0].getMessage()


def test_otlp_export_reaches_a_real_receiver():
    received = []
    collector = Collector(received.extend)
    collector.start()
    try:
        tl.configure("otlp-svc", endpoint=collector.endpoint)
        with tl.span("parent", attributes={"k": "v", "n": 3}) as p, tl.span("child"):
            pass
        tl.flush()
    finally:
        collector.stop()
    by_name = {s.name: s for s in received}
    assert set(by_name) == {"parent", "child"}
    assert by_name["child"].parent_id == format(p.get_span_context().span_id, "016x")
    assert by_name["parent"].trace_id == format(p.get_span_context().trace_id, "032x")
    assert by_name["parent"].attributes == {"k": "v", "n": 3}
    assert by_name["parent"].service == "otlp-svc"


def test_console_exporter_prints_a_tree():
    code = """
import threadline as tl
tl.configure("console-svc", exporter="console")

@tl.traced
def checkout():
    with tl.span("load cart"):
        pass
    try:
        with tl.span("charge"):
            raise ValueError("card declined")
    except ValueError:
        pass

checkout()
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = out.splitlines()
    assert lines[0].startswith("trace ") and "service=console-svc" in lines[0]
    assert lines[1].strip().startswith("checkout")
    assert "├─ load cart" in lines[2]
    assert "└─ charge" in lines[3] and "ERROR ValueError: card declined" in lines[3]


def test_import_is_light():
    code = "import sys, threadline; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "threadline._spans" in loaded  # the modules are read as they are named
    heavy = (
        "threadline.server", "threadline.integrations", "threadline.boundaries",
        "threadline.testing", "threadline.demo", "threadline.report", "starlette", "uvicorn",
        "duckdb", "pyarrow", "grpc", "google.protobuf", "opentelemetry.proto",
        "opentelemetry.exporter", "opentelemetry.sdk", "opentelemetry.instrumentation", "rich",
        "httpx", "requests", "urllib3", "http.client", "asyncio", "multiprocessing", "django",
        "sqlalchemy", "sqlparse", "psycopg", "psycopg2", "asyncpg", "pymysql", "sqlite3",
    )  # fmt: skip
    assert sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy)) == []


def test_settings_round_trip_for_children():
    s = tl.configure("parent-svc", exporter="none", sample_ratio=0.5)
    again = _settings.Settings(**s.to_dict())
    assert again == s


def test_queue_overflow_is_counted_and_logged_once(monkeypatch, caplog):

    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from threadline import _export

    gate = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans):
            gate.wait(10)
            return SpanExportResult.SUCCESS

    class Ended(SpanProcessor):  # every span that reached the export path, strays included
        count = 0

        def on_end(self, span):
            Ended.count += 1

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    tl.configure("overflow", exporter=Stuck())
    _export.stats.reset()
    counter = Ended()
    seam.add_tap(counter)
    caplog.set_level(logging.WARNING)
    try:
        for _ in range(50):
            with tl.span("burst"):
                pass
        gate.set()
        tl.flush()
    finally:
        seam.remove_tap(counter)
    stats = tl.export_stats()
    _export.stats.reset()  # the drops were this test's own: not for the exit report
    assert Ended.count >= 50
    assert stats["dropped"] >= 40  # at most the queue and the batches in flight got through
    # Every span is accounted for. The SDK decides "full" just before appending, so a batch the
    # worker takes in between can make it count one drop too many, never one too few.
    assert Ended.count <= stats["dropped"] + stats["exported"] <= Ended.count + 2
    assert stats["errors"]["queue_full"] == stats["dropped"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropping spans before export (queue_full)" in m for m in messages) == 1
    assert not any("Queue full" in m for m in messages)


def test_configure_installs_the_w3c_propagators_unless_the_user_chose_others(monkeypatch):
    from opentelemetry import propagate

    tl.configure("w3c", exporter="none")
    assert getattr(propagate.get_global_textmap(), "_threadline_w3c", False)
    # repeated traceparent headers make the context invalid: the stock propagator took the first
    h = tl.Handoff.from_carrier(
        {
            "traceparent": [
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ]
        }
    )
    assert not h
    code = (
        "import threadline as tl; from opentelemetry import propagate;"
        "tl.configure('x', exporter='none');"
        "print(getattr(propagate.get_global_textmap(), '_threadline_w3c', False))"
    )
    env = {**os.environ, "OTEL_PROPAGATORS": "tracecontext"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False"  # the user's OTEL_PROPAGATORS choice stands


def test_flush_timeout_is_a_number_of_seconds():
    with pytest.raises(TypeError, match="timeout must be a number of seconds, not 'soon'"):
        tl.flush("soon")


def test_spans_open_across_a_reconfigure_end_in_the_new_configuration():
    from threadline import _export

    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    tl.configure("a", exporter=first)
    _export.stats.reset()
    with tl.span("outer") as outer:
        with tl.span("done before"):
            pass
        tl.configure("b", exporter=second)
        with tl.span("inner"):
            pass
    tl.flush()
    assert [s.name for s in first.get_finished_spans()] == ["done before"]
    spans = {s.name: s for s in second.get_finished_spans()}
    assert sorted(spans) == ["inner", "outer"]
    assert spans["inner"].parent.span_id == outer.get_span_context().span_id
    assert spans["outer"].resource.attributes["service.name"] == "a"  # where it started
    assert spans["inner"].resource.attributes["service.name"] == "b"
    assert tl.export_stats()["dropped"] == 0


def test_a_span_ending_after_shutdown_is_counted_as_dropped():
    from threadline import _export

    memory = InMemorySpanExporter()
    tl.configure("a", exporter=memory)
    _export.stats.reset()
    with tl.span("late"):
        tl.shutdown()
    stats = tl.export_stats()
    _export.stats.reset()
    assert memory.get_finished_spans() == ()
    assert (stats["dropped"], stats["errors"]) == (1, {"ended_after_shutdown": 1})


def test_an_exporter_switched_away_from_can_be_used_again():
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    for name, exporter in (("one", first), ("two", second), ("three", first)):
        tl.configure("x", exporter=exporter)
        with tl.span(name):
            pass
    tl.flush()
    assert [s.name for s in first.get_finished_spans()] == ["one", "three"]
    assert [s.name for s in second.get_finished_spans()] == ["two"]
    tl.shutdown()
    with pytest.raises(ValueError, match="this SpanExporter instance was shut down by threadline"):
        tl.configure("x", exporter=first)


def test_spans_are_flushed_at_a_normal_exit_without_shutdown():
    code = """
import threadline as tl
tl.configure("exits", endpoint={endpoint!r}, announce=False)
with tl.span("main"):
    for i in range(50):
        with tl.span(f"step {{i}}"):
            pass
"""  # the batch processor would wait 5 s for a batch of 512: only the exit flush sends these
    out, received = run_exporting(code)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    by_name = {s.name: s for s in received}
    assert len(received) == 51 and len(by_name) == 51
    main = by_name["main"]
    assert all(by_name[f"step {i}"].parent_id == main.span_id for i in range(50))
    assert {s.resource["service.name"] for s in received} == {"exits"}


def test_boundaries_false_uninstalls_what_configure_installed_not_what_the_user_did():
    from threadline import boundaries
    from threadline.boundaries import asyncio as asyncio_boundary
    from threadline.boundaries import threads

    boundaries.uninstrument()
    threads.instrument(span=True)  # the user's own, before configure()
    tl.configure("x", exporter="none")
    assert boundaries.instrumented() == ["threads", "asyncio", "processes", "nodes"]
    tl.configure("x", exporter="none", boundaries=False)
    assert boundaries.instrumented() == ["threads"]
    assert threads.policy().span is True
    tl.configure("x", exporter="none")
    boundaries.instrument("asyncio")  # installed by name after configure(): the user's now
    tl.configure("x", exporter="none", boundaries=False)
    assert boundaries.instrumented() == ["threads", "asyncio"]
    threads.uninstrument()
    asyncio_boundary.uninstrument()
