"""threadline traces: recent traces, newest first."""

from __future__ import annotations

import argparse

from threadline.report import add_server_argument, add_since_argument, console, fetch
from threadline.report.render import trace_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="only traces with a span from this service")
    parser.add_argument("--operation", help="only traces with a span of this name")
    add_since_argument(parser)
    parser.add_argument("--errors", action="store_true", help="only traces with an error span")
    parser.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    add_server_argument(parser)


def run(args: argparse.Namespace) -> int:
    doc = fetch(
        args.server,
        "/api/threadline/search",
        service=args.service,
        operation=args.operation,
        lookback=args.since.lookback,
        status="error" if args.errors else None,
        limit=args.limit,
    )
    found = doc.get("traces", [])
    out = console()
    if not found:
        out.print(
            f"no traces in the last {args.since}" + (f" for {args.service}" if args.service else "")
        )
        return 0
    out.print(trace_list(found))
    return 0
