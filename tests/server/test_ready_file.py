"""`threadline serve --port 0 --ready-file PATH`: the ports it chose, as JSON a script can read,
written once every port listens."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

from threadline.server import serving
from threadline.server.client import Client

WAIT = 60


def wait_for_file(path, proc) -> dict:
    """The file this server wrote (not one left by an earlier run: its pid says whose it is)."""
    deadline = time.monotonic() + WAIT
    while True:  # another process: there is nothing to wait on but the file
        try:
            doc = json.loads(path.read_text())  # renamed into place whole: never half a file
        except FileNotFoundError:  # not yet, or the old one was just removed
            doc = {}
        if doc.get("pid") == proc.pid:
            return doc
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"no {path} from pid {proc.pid} after {WAIT}s"
        time.sleep(0.05)


def test_the_ready_file_says_where_every_port_listens(tmp_path):
    path = tmp_path / "ready.json"
    path.write_text('{"api": "http://127.0.0.1:1"}')  # left by an earlier run
    proc = subprocess.Popen(
        serving.serve_argv(":memory:", "--ready-file", str(path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        doc = wait_for_file(path, proc)
        assert doc["pid"] == proc.pid and doc["db"] == ":memory:"
        ports = doc["ports"]
        assert sorted(ports) == ["api", "otlp_grpc", "otlp_http"]
        assert all(isinstance(p, int) and p > 0 for p in ports.values())
        assert len(set(ports.values())) == 3
        assert doc["api"] == f"http://127.0.0.1:{ports['api']}"
        assert doc["otlp_http"] == f"http://127.0.0.1:{ports['otlp_http']}"
        assert doc["otlp_grpc"] == f"127.0.0.1:{ports['otlp_grpc']}"
        for port in ports.values():  # every one listens as the file appears
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert Client(doc["api"]).services() == []
        assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no partial file left
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    assert not path.exists()  # a stopped server is not ready


def test_a_ready_file_in_a_missing_directory_is_refused_before_serving(tmp_path):
    path = tmp_path / "nowhere" / "ready.json"
    proc = subprocess.run(
        serving.serve_argv(":memory:", "--ready-file", str(path)),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"threadline serve: --ready-file {path}: no directory {path.parent}"
    )
