"""threadline show / traces / check against a real server holding a whole and a broken trace."""

from __future__ import annotations

import re

import pytest

import threadline as tl
from threadline.cli import main
from threadline.server.serving import start

MISSING = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"  # a parent span that never arrives


@pytest.fixture(scope="module")
def server():
    with start() as srv:
        tl.configure("shop", endpoint=srv.urls.otlp_http)
        try:
            with tl.span("checkout") as root:
                with tl.span("charge"):
                    try:
                        with tl.span("authorize"):
                            raise ValueError("card expired")
                    except ValueError:
                        pass
            with tl.resume({"traceparent": MISSING}, "orphan work"):
                pass
            assert tl.flush()  # acknowledged once stored
            srv.whole = format(root.get_span_context().trace_id, "032x")
            yield srv
        finally:
            tl.shutdown()


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_show_prints_the_waterfall(server, capsys):
    code, out = cli(capsys, "show", server.whole, "--server", server.urls.api)
    assert code == 0
    assert f"trace {server.whole}" in out and "3 spans, 1 service, 1 error" in out
    lines = out.splitlines()
    names = [line.split()[0] for line in lines[1:4]]
    assert names == ["checkout", "charge", "authorize"]
    assert "✖ ValueError: card expired" in out


def test_show_unknown_and_bad_ids(server, capsys):
    code, out = cli(capsys, "show", "f" * 32, "--server", server.urls.api)
    assert code == 1 and "not found" in out
    with pytest.raises(SystemExit, match="up to 32 hex digits"):
        main(["show", "xyz", "--server", server.urls.api])


def test_traces_lists_filters_by_errors_and_service(server, capsys):
    code, out = cli(capsys, "traces", "--server", server.urls.api)
    assert code == 0 and server.whole in out and "1" * 32 in out
    code, out = cli(capsys, "traces", "--errors", "--server", server.urls.api)
    assert server.whole in out and "1" * 32 not in out
    code, out = cli(
        capsys, "traces", "--service", "nobody", "--since", "10m", "--server", server.urls.api
    )
    assert code == 0 and "no traces in the last 10m for nobody" in out


def test_check_gates_on_completeness(server, capsys):
    code, out = cli(capsys, "check", "--server", server.urls.api)
    assert code == 1
    assert re.search(r"connected \(one tree\)\s+50\.0%", out)
    assert "broken hops" in out and "FAIL" in out
    code, out = cli(capsys, "check", "--min-completeness", "0.5", "--server", server.urls.api)
    assert code == 0 and "OK" in out


def test_check_with_no_traces_fails(capsys):
    with start() as empty:
        code, out = cli(capsys, "check", "--server", empty.urls.api)
    assert code == 1
    assert out.splitlines()[-1] == f"FAIL no traces in the last 1h at {empty.urls.api}"
    assert "no broken hops" not in out  # nothing was checked


def test_unreachable_server(capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(SystemExit, match="cannot reach a threadline server"):
        main(["check", "--server", url])


@pytest.mark.parametrize("command", ["traces", "check"])
def test_bad_window_is_said_the_same_way_by_every_command(command, server, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--since", "ten minutes", "--server", server.urls.api])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (
        f"threadline {command}: error: argument --since: takes a duration such as 30s, 10m, "
        "1h or 2d, not 'ten minutes'"
    )


@pytest.mark.parametrize("window", ["2d", "1.5h"])
def test_every_window_the_help_names_works_for_every_command(window, server, capsys):
    code, out = cli(capsys, "traces", "--since", window, "--server", server.urls.api)
    assert code == 0 and server.whole in out and "1" * 32 in out
    code, out = cli(capsys, "check", "--since", window, "--server", server.urls.api)
    assert code == 1 and re.search(r"connected \(one tree\)\s+50\.0%", out)


def test_since_is_sent_as_a_lookback_every_endpoint_reads():
    from threadline.report import since

    assert (since("500ms").lookback, since("90s").lookback) == ("500ms", "90000ms")
    assert (since("1.5h").seconds, since("2d").lookback) == (5400.0, "172800000ms")


def test_bad_threshold():
    with pytest.raises(SystemExit):
        main(["check", "--min-completeness", "2"])


def test_show_prints_events_under_their_spans(server, capsys):
    import logging

    from threadline.integrations import logs

    log = logging.getLogger("shop.refunds")
    logs.install(span_events=True)
    try:
        with tl.span("refund") as root:
            with tl.span("reverse charge") as reverse:
                reverse.add_event("bank.request", {"bank": "acme", "attempt": 2})
                log.warning("refund of %d EUR held for review", 30)
            log.info("an INFO record is no event")
    finally:
        logs.uninstall()
    assert tl.flush()
    trace_id = format(root.get_span_context().trace_id, "032x")
    code, out = cli(capsys, "show", trace_id, "--server", server.urls.api)
    assert code == 0
    lines = [line.rstrip() for line in out.splitlines()]
    assert [line.split()[0] for line in lines[1:]] == ["refund", "reverse", "•", "▲"]
    assert lines[3] == "      • bank.request bank=acme attempt=2"
    assert lines[4] == "      ▲ WARNING [shop.refunds] refund of 30 EUR held for review"
    code, out = cli(capsys, "show", trace_id, "--no-events", "--server", server.urls.api)
    assert len(out.splitlines()) == 3
