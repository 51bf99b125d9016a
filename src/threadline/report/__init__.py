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
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:16686"


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
