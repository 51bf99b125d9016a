"""`threadline serve` from cold: how long until it accepts, against a bare interpreter start.

Each round spawns `threadline serve` on free ports with a fresh DuckDB store (a new directory)
and times, from the spawn, the first TCP connection the API port accepts and the first
`GET /api/services` answered 200. Bytecode is cached as for an installed copy (one warm-up
start first). Wall time, as a user waits for it: best of ROUNDS, with the range seen.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fresh_interpreter

ROUNDS = 5
GOAL_MS = 1500
POLL = 0.002  # seconds between attempts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/services")
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return response.status == 200


def start_ms() -> tuple[float, float]:
    """Milliseconds from spawning `threadline serve` to its first accepted connection and to its
    first answered GET."""
    api, otlp_http, otlp_grpc = (_free_port() for _ in range(3))
    with tempfile.TemporaryDirectory(prefix="threadline-serve-start-") as tmp:
        # fmt: off
        command = [
            sys.executable, "-m", "threadline.cli", "serve", "--port", str(api),
            "--otlp-http-port", str(otlp_http), "--otlp-grpc-port", str(otlp_grpc),
            "--db", str(Path(tmp) / "traces.duckdb"), "--ready-file", str(Path(tmp) / "ready"),
        ]
        # fmt: on
        log = Path(tmp) / "stderr"
        start = time.perf_counter()
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                command, env=fresh_interpreter.env(), stdout=subprocess.DEVNULL, stderr=stderr
            )
        try:
            connected = None
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"threadline serve exited: {log.read_text()}")
                if connected is None and _connects(api):
                    connected = time.perf_counter() - start
                if connected is not None and _answers(api):
                    return connected * 1e3, (time.perf_counter() - start) * 1e3
                time.sleep(POLL)
        finally:
            proc.terminate()
            proc.wait()


def run() -> list[dict]:
    start_ms()  # writes the bytecode cache
    bare = min(fresh_interpreter.run_ms("pass") for _ in range(ROUNDS))
    connects, answers = zip(*(start_ms() for _ in range(ROUNDS)), strict=True)

    def row(name: str, values: tuple[float, ...]) -> dict:
        return {
            "name": name,
            "value": min(values),
            "unit": "ms",
            "baseline": bare,
            "ratio_to": "bare interpreter start",
            "note": f"goal < {GOAL_MS} ms; best of {ROUNDS}, "
            f"range {min(values):.0f}-{max(values):.0f} ms",
        }

    return [
        row("threadline serve, fresh store: first connection accepted", connects),
        row("threadline serve, fresh store: first GET answered", answers),
    ]
