"""Settings resolution on its own: arguments and OTEL_* variables in, a frozen Settings out, with
no OpenTelemetry SDK anywhere (threadline._settings is pure)."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys

import pytest

from threadline._settings import DEFAULT_ENDPOINT, Settings, env_resource, export_url, resolve

OTEL_VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_resolving_imports_no_sdk():
    code = (
        "import sys\n"
        "from threadline._settings import resolve\n"
        "resolve('svc', exporter='console,otlp', sample_ratio=0.5)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_defaults_name_the_service_after_the_program(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/srv/app/checkout.py"])
    s = resolve()
    assert s == Settings(service_name="unknown_service:checkout")
    assert (s.endpoint, s.exporter, s.sample_ratio, s.announce) == (
        DEFAULT_ENDPOINT,
        "otlp",
        1.0,
        None,
    )
    assert export_url(s) == DEFAULT_ENDPOINT + "/v1/traces"


def test_settings_are_frozen_plain_values_that_round_trip():
    s = resolve("svc", resource_attributes={"team": "pay"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.service_name = "other"  # type: ignore[misc]
    assert Settings(**s.to_dict()) == s


def test_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")
    assert resolve().service_name == "from-env"
    s = resolve("from-arg", exporter="none", endpoint="http://arg:4318/")
    assert (s.service_name, s.exporter, s.endpoint) == ("from-arg", "none", "http://arg:4318")


def test_resource_attributes_variable_fills_the_service_fields(monkeypatch):
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=shop,service.version=2.1,deployment.environment=prod,note=a%2Cb",
    )
    assert env_resource()["note"] == "a,b"
    s = resolve()
    assert (s.service_name, s.service_version, s.environment) == ("shop", "2.1", "prod")


def test_the_traces_endpoint_variable_is_used_as_it_is(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom")
    assert export_url(resolve("svc")) == "http://collector:4318/custom"
    # An explicit endpoint replaces both variables.
    assert export_url(resolve("svc", endpoint="http://arg:4318")) == "http://arg:4318/v1/traces"


@pytest.mark.parametrize(
    ("variable", "value", "field", "default"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "exporter", "otlp"),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote", "sample_ratio", 1.0),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "endpoint", DEFAULT_ENDPOINT),
    ],
)
def test_a_bad_environment_value_is_logged_and_the_default_stands(
    monkeypatch, caplog, variable, value, field, default
):
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="threadline"):
        s = resolve("svc")
    assert getattr(s, field) == default
    assert variable in caplog.text


def test_exporter_variable_keeps_the_known_names_once(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console, otlp,console,none")
    assert resolve("svc").exporter == "console,otlp"


@pytest.mark.parametrize(
    ("sampler", "arg", "ratio"),
    [
        ("always_off", None, 0.0),
        ("parentbased_always_on", "0.2", 1.0),
        ("traceidratio", "0.25", 0.25),
        ("parentbased_traceidratio", "2", 1.0),
        (None, "0.5", 0.5),
    ],
)
def test_sampler_variables_map_onto_the_parent_based_ratio(monkeypatch, sampler, arg, ratio):
    if sampler is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert resolve("svc").sample_ratio == ratio


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"exporter": "zipkin"}, ValueError),
        ({"exporter": "none,otlp"}, ValueError),
        ({"exporter": 3}, TypeError),
        ({"sample_ratio": 1.5}, ValueError),
        ({"sample_ratio": True}, TypeError),
        ({"endpoint": "collector:4318"}, ValueError),
        ({"service_name": ""}, ValueError),
        ({"namespace": 1}, TypeError),
        ({"boundaries": "yes"}, TypeError),
        ({"announce": 1}, TypeError),
        ({"resource_attributes": [("a", 1)]}, TypeError),
    ],
)
def test_a_bad_argument_raises(arguments, error):
    with pytest.raises(error):
        resolve(**{"service_name": "svc", **arguments})


def test_a_custom_exporter_is_named_custom():
    assert resolve("svc", custom_exporter=True).exporter == "custom"
