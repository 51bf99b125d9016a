"""threadline show TRACE_ID: one trace as a terminal waterfall."""

from __future__ import annotations

import argparse
import re

from threadline.report import add_server_argument, console, fetch
from threadline.report.render import waterfall


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_id", help="the trace id (32 hex digits; shorter ids are 0-padded)")
    add_server_argument(parser)
    parser.add_argument("--skew", action="store_true", help="correct clock skew between hosts")
    parser.add_argument("--no-events", action="store_true", help="leave span events out")


def run(args: argparse.Namespace) -> int:
    trace_id = args.trace_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,32}", trace_id):
        raise SystemExit(f"threadline: a trace id is up to 32 hex digits, not {args.trace_id!r}")
    try:
        payload = fetch(
            args.server,
            f"/api/threadline/analysis/trace/{trace_id}",
            skew="1" if args.skew else None,
        )
    except LookupError:
        console().print(f"trace {trace_id.rjust(32, '0')} not found at {args.server}")
        return 1
    console().print(waterfall(payload, events=not args.no_events))
    return 0
