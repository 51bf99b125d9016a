"""Every ```python block in README.md and docs/*.md runs, so the documentation cannot drift.

Each block is a program: it is written to a fresh directory and run there with this interpreter
in a subprocess (timeout EXAMPLE_TIMEOUT), and must exit 0. The blocks are read with
markdown-it-py (a CommonMark parser, so a fence is found exactly as MkDocs renders it), which is
installed already; pytest-examples would add its own formatter and linter checks and a second
fence grammar for nothing these examples need.

A real `threadline serve` (on ephemeral ports, with a temporary DuckDB file) runs for the
module; every program gets OTEL_EXPORTER_OTLP_ENDPOINT and THREADLINE_SERVER pointing at it, and
the test services on 127.0.0.1 (RabbitMQ, Redis, NATS, Mosquitto, PostgreSQL) are used as they
are. A program that calls `tl.configure(...)` with neither `exporter=` nor `endpoint=` (nor
`**arguments`), or that sets OpenTelemetry up itself and calls
`ThreadlineInstrumentor().instrument(...)`, exports to that server, and must have delivered at
least one span to it by the time it exits.

Markers, the only ways a block is treated otherwise (keep them rare):

- ```python title="tasks.py"``: a file of a program in several files. It is not run; it is
  written, under that name, beside every later block of the same page. A title that starts
  with ``test_`` is a test module instead: it is run with ``python -m pytest`` (the threadline
  plugin, and its ``traces`` fixture, load as they do for users).
- ``<!-- not-run: reason -->`` on the line before a fence: the block is not run (it is a
  listing, or a program that serves forever); the test is skipped, saying why.
- ``<!-- no-spans: reason -->`` on the line before a fence: the block runs, but exporting spans
  is not its job (it defines an app for a server to run), so the span check is left out.

Blocks in other languages (bash, console, text) are not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_TIMEOUT = 240  # seconds; Ray's cluster start is the slowest
MARKER = re.compile(r"<!--\s*(not-run|no-spans):\s*(.*?)\s*-->", re.S)
TITLE = re.compile(r'title="([^"]+)"')


@dataclass
class Example:
    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    files: dict[str, str] = field(default_factory=dict)  # earlier titled blocks of the page
    test_module: str | None = None  # the title, for a block run with pytest
    skip: str | None = None
    no_spans: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def exports_to_server(self) -> bool:
        if "ThreadlineInstrumentor().instrument(" in self.code:  # on the program's own set-up,
            return self.no_spans is None  # which exports to $OTEL_EXPORTER_OTLP_ENDPOINT
        configured = re.search(r"\btl\.configure\(([^)]*)\)", self.code)
        return (
            configured is not None
            and "exporter=" not in configured.group(1)
            and "endpoint=" not in configured.group(1)
            and "**" not in configured.group(1)  # arguments built elsewhere: not a plain set-up
            and self.no_spans is None
        )


def examples(page: Path) -> list[Example]:
    tokens = MarkdownIt("commonmark").parse(page.read_text())
    files: dict[str, str] = {}
    out: list[Example] = []
    for i, tok in enumerate(tokens):
        if tok.type != "fence":
            continue
        lang, _, rest = tok.info.strip().partition(" ")
        if lang != "python":
            continue
        marker = None
        if i > 0 and tokens[i - 1].type == "html_block":
            m = MARKER.search(tokens[i - 1].content)
            marker = (m.group(1), m.group(2)) if m else None
        line = tok.map[0] + 1 if tok.map else 0
        title = TITLE.search(rest)
        if title and not title.group(1).startswith("test_"):
            files[title.group(1)] = tok.content
            continue
        out.append(
            Example(
                page,
                line,
                tok.content,
                dict(files),
                test_module=title.group(1) if title else None,
                skip=marker[1] if marker and marker[0] == "not-run" else None,
                no_spans=marker[1] if marker and marker[0] == "no-spans" else None,
            )
        )
    return out


ALL = [ex for page in PAGES for ex in examples(page)]


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """`threadline serve` in a child process, as a user runs it."""
    from threadline import server

    db = str(tmp_path_factory.mktemp("serve") / "traces.duckdb")
    with server.spawn(db) as srv:
        yield srv


def stored_spans(api: str) -> int:
    with urllib.request.urlopen(f"{api}/api/threadline/stats", timeout=10) as r:
        stats = json.load(r)
    return int(stats["spans"])


def test_every_page_has_been_read():
    assert len(PAGES) > 10 and ALL, "no documentation pages or examples found"


@pytest.mark.parametrize("example", ALL, ids=[ex.id for ex in ALL])
def test_example_runs(example: Example, serve, tmp_path):
    if example.skip:
        pytest.skip(f"not run: {example.skip}")
    for name, text in example.files.items():
        (tmp_path / name).write_text(text)
    if example.test_module:
        (tmp_path / example.test_module).write_text(example.code)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        argv.append(example.test_module)
    else:
        (tmp_path / "example.py").write_text(example.code)
        argv = [sys.executable, "example.py"]
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": serve.urls.otlp_http,
        "THREADLINE_SERVER": serve.urls.api,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    for name in ("OTEL_SERVICE_NAME", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(name, None)
    before = stored_spans(serve.urls.api)
    try:
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{example.id} ran longer than {EXAMPLE_TIMEOUT} s:\n{e.stdout}\n{e.stderr}")
    assert done.returncode == 0, (
        f"{example.id} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    if example.exports_to_server():
        deadline = time.monotonic() + 15  # the server acknowledges after its commit
        while stored_spans(serve.urls.api) <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored_spans(serve.urls.api) > before, (
            f"{example.id} exported no span to threadline serve:\n{done.stderr[-4000:]}"
        )
