"""`threadline demo`: the shop's services as separate processes, traced end to end.

Starts an embedded `threadline serve` (in memory, UI on --port) unless --endpoint names another
OTLP receiver, runs N checkouts through the gateway, stops the services (each exports what it
has), then prints one checkout trace as a waterfall, the service map and the completeness report.
Without --once it then keeps the UI up and starts the shop again, with its live order page (a
browser's click traced to the inventory service), until Ctrl-C. Every process it started is
stopped on exit.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any

from threadline.report import DEFAULT_SERVER, fetch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--requests", type=int, default=40, help="checkouts to send (default 40)"
    )
    parser.add_argument("--once", action="store_true", help="print the report and exit")
    parser.add_argument(
        "--port", type=int, default=16686, help="UI/API port of the embedded server (0: any free)"
    )
    parser.add_argument("--db", default=":memory:", help="DuckDB file for the embedded server")
    parser.add_argument(
        "--endpoint", help="send spans to this OTLP/HTTP endpoint instead of an embedded server"
    )
    parser.add_argument(
        "--server",
        help=f"with --endpoint: the threadline server to read the traces from (default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--cooldown", type=float, default=1.0, help="seconds the payments circuit stays open"
    )
    parser.add_argument(
        "--sample",
        type=float,
        default=None,
        metavar="RATIO",
        help="head sampling at the gateway, 0..1 (default: $OTEL_TRACES_SAMPLER_ARG or 1)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from threadline.demo.shop import Shop
    except ImportError as exc:
        raise SystemExit(
            f"threadline demo needs {exc.name}: pip install 'threadline[demo]'"
        ) from None

    if args.requests < 1:
        raise SystemExit("threadline demo: --requests must be at least 1")
    if args.sample is not None and not 0.0 <= args.sample <= 1.0:
        raise SystemExit("threadline demo: --sample must be between 0 and 1")
    # Ctrl-C and SIGTERM both unwind through the finally blocks that stop every process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    console = Console(highlight=False)
    server = None
    if args.endpoint is None:
        from threadline.server.serving import PortInUse, Server

        try:
            server = Server(port=args.port, otlp_http_port=0, otlp_grpc_port=None, db=args.db)
        except PortInUse as exc:
            if args.port == 0:
                raise SystemExit(f"threadline demo: {exc}") from None
            console.print(
                f"[yellow]{exc}[/yellow]: the UI takes a free port instead", soft_wrap=True
            )
            server = Server(port=0, otlp_http_port=0, otlp_grpc_port=None, db=args.db)
        server.start()
        endpoint, api = server.urls.otlp_http, server.urls.api
    else:
        endpoint, api = args.endpoint, args.server or DEFAULT_SERVER
    try:
        started_ns = time.time_ns()
        console.print(f"[bold]threadline demo[/bold]: starting the shop (spans to {endpoint})")
        with Shop(endpoint, cooldown=args.cooldown, sample_ratio=args.sample) as shop:
            console.print(f"shop running: gateway at {shop.gateway}/checkout", soft_wrap=True)
            counts: dict[str, int] = {}
            with Progress(
                TextColumn("checkouts"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=False,
            ) as progress:
                task = progress.add_task("", total=args.requests)

                def advance(outcome: Any) -> None:
                    counts[outcome.label] = counts.get(outcome.label, 0) + 1
                    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                    progress.update(task, advance=1, description=summary)

                outcomes = shop.run(args.requests, progress=advance)
        ended_ns = time.time_ns()  # the shop has stopped: every span is exported
        report(console, api, outcomes, started_ns, ended_ns)
        if not args.once:
            # The shop again, for people: its live order page traces from the browser's click.
            with Shop(endpoint, cooldown=args.cooldown, sample_ratio=args.sample) as shop:
                console.print(f"\nUI: [bold]{api}[/bold]")
                console.print(f"live order page: [bold]{shop.web}[/bold]   (Ctrl-C to stop)")
                threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        if server is not None:
            server.stop()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def report(console: Any, api: str, outcomes: list, started_ns: int, ended_ns: int) -> None:
    from threadline.report.render import completeness_report, dependency_map, waterfall

    window = {"start": started_ns // 1000, "end": ended_ns // 1000 + 1}
    kept = [o for o in outcomes if o.trace_id and o.sampled]
    placed = [o for o in kept if o.status == 200]
    # the last placed order: a warm path (the first one also pays for connection set-up)
    example = placed[-1] if placed else (kept[0] if kept else None)
    if len(kept) < len(outcomes):
        console.print(
            f"sampling: {len(kept)} of {len(outcomes)} checkouts traced "
            "(decided at the gateway, kept whole)"
        )
    if example is not None:
        console.rule("one checkout")
        console.print(waterfall(fetch(api, f"/api/threadline/analysis/trace/{example.trace_id}")))
    console.rule("service map")
    console.print(dependency_map(fetch(api, "/api/threadline/analysis/dependencies", **window)))
    console.rule("trace completeness")
    console.print(
        completeness_report(
            fetch(api, "/api/threadline/analysis/completeness", buckets=1, **window), title=False
        )
    )
