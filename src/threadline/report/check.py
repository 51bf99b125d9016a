"""threadline check: trace quality for a CI gate.

Prints the completeness metrics, broken hops and dropped contexts of the traces in a window and
exits 1 when the share of connected traces (one tree whose root did not drop its context) is
under --min-completeness (or there are none), 0 otherwise. Lists the databases and external
services the traces called, and their callers.
"""

from __future__ import annotations

import argparse

from threadline.report import add_server_argument, add_since_argument, console, fetch
from threadline.report.render import completeness_report, connected_share, peer_list


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_since_argument(parser)
    parser.add_argument(
        "--min-completeness",
        type=_share,
        default=0.99,
        help="least share of connected traces to pass (default 0.99)",
    )
    add_server_argument(parser)


def run(args: argparse.Namespace) -> int:
    payload = fetch(
        args.server,
        "/api/threadline/analysis/completeness",
        lookback=args.since.lookback,
        buckets=1,
    )
    out = console()
    out.print(completeness_report(payload))
    graph = fetch(
        args.server, "/api/threadline/analysis/dependencies", lookback=args.since.lookback
    )
    peers = peer_list(graph)
    if peers is not None:
        out.print(peers)
    share = connected_share(payload)
    if not payload.get("traces"):
        out.print(f"[red]FAIL[/red] no traces in the last {args.since} at {args.server}")
        return 1
    if share < args.min_completeness:
        out.print(
            f"[red]FAIL[/red] {share:.2%} of traces are connected; "
            f"at least {args.min_completeness:.2%} required"
        )
        return 1
    out.print(f"[green]OK[/green] {share:.2%} of traces connected (>= {args.min_completeness:.2%})")
    return 0
