"""`threadline show`, `traces` and `check`: read a running threadline server from the terminal.

Each command is a module exposing add_arguments(parser) and run(args) (see threadline.cli); they
share the --server option and the error handling below, and render with threadline.report.render.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
from dataclasses import dataclass
from typing import Any

from threadline.server.durations import parse_duration

DEFAULT_SERVER = "http://127.0.0.1:16686"


@dataclass(frozen=True)
class Since:
    """How far back a command looks (--since), as written and in seconds."""

    text: str
    seconds: float

    def __str__(self) -> str:
        return self.text

    @property
    def lookback(self) -> str:
        """The window as the server's endpoints all read it (Go durations have no days)."""
        return f"{round(self.seconds * 1000)}ms"


def since(text: str) -> Since:
    try:
        ns = parse_duration(text, days=True)
    except ValueError:
        ns = 0
    if ns <= 0:
        raise argparse.ArgumentTypeError(
            f"takes a duration such as 30s, 10m, 1h or 2d, not {text!r}"
        )
    return Since(text.strip(), ns / 1e9)


def add_since_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=since, default="1h", help="how far back: 30s, 10m, 1h, 2d (default 1h)"
    )


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("THREADLINE_SERVER") or DEFAULT_SERVER,
        help=f"threadline server to read (default $THREADLINE_SERVER or {DEFAULT_SERVER})",
    )


def fetch(server: str, path: str, **params: Any) -> Any:
    """GET a JSON endpoint of the server; raises SystemExit with a clear message on failure."""
    from threadline.server.client import Client, ClientError

    try:
        return Client(server, timeout=30).get(path, **params)
    except ClientError as exc:
        if exc.status == 404:
            raise LookupError(str(exc)) from None
        detail = str(exc).split(": ", 1)[-1]
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise SystemExit(f"threadline: {server} refused the request: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SystemExit(
            f"threadline: cannot reach a threadline server at {server}: {reason}"
        ) from None


def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
