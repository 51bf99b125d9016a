"""`threadline serve`: receive OTLP, store it, answer Jaeger-compatible queries, serve the UI."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from threadline.server.durations import parse_duration


def _duration(text: str) -> int:
    try:  # Go durations have no days; accept them anyway ("7d")
        ns = parse_duration(text, days=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ns <= 0:
        raise argparse.ArgumentTypeError("retention must be positive")
    return ns


DESCRIPTION = (
    "Receive OTLP traces (HTTP on :4318, gRPC on :4317), store every span in one DuckDB file "
    "(or in ClickHouse, on the OpenTelemetry Collector's tables: --store), "
    "and serve the Jaeger query API and the web UI on :16686. Listens on loopback unless --host "
    "says otherwise; point exporters at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318."
)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number (0-65535, 0 for any free port)"
        )
    return port


def _size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of bytes")
    return size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: loopback only)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=16686,
        metavar="PORT",
        help="query API and web UI (default 16686, as Jaeger)",
    )
    parser.add_argument(
        "--otlp-http-port",
        type=_port,
        default=4318,
        metavar="PORT",
        help="OTLP/HTTP receiver (default 4318)",
    )
    parser.add_argument(
        "--otlp-grpc-port",
        type=_port,
        default=4317,
        metavar="PORT",
        help="OTLP/gRPC receiver (default 4317)",
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="FILE",
        help="DuckDB file, or :memory:; shorthand for --store duckdb:FILE (default: "
        "~/.local/share/threadline/traces.duckdb, under $XDG_DATA_HOME when set)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="where spans are kept: duckdb:PATH (the default; --db PATH is its shorthand), "
        "chdb:DIR (ClickHouse embedded) or clickhouse://[user[:password]@]host[:port]/database "
        "(a ClickHouse server over HTTP; the password may come from "
        "THREADLINE_CLICKHOUSE_PASSWORD; THREADLINE_CLICKHOUSE_TIMEOUT seconds to wait for an "
        "answer, default 30)",
    )
    parser.add_argument(
        "--clickhouse-database",
        default=None,
        metavar="NAME",
        help="ClickHouse database (default: the URL's, else otel)",
    )
    parser.add_argument(
        "--clickhouse-traces-table",
        default="otel_traces",
        metavar="NAME",
        help="the collector's traces table (default otel_traces; also NAME_trace_id_ts and "
        "NAME_trace_id_ts_mv)",
    )
    parser.add_argument(
        "--clickhouse-cluster",
        default=None,
        metavar="NAME",
        help="create missing tables ON CLUSTER NAME with Replicated engines and Distributed "
        "tables over them (TABLE_dist, TABLE_trace_id_ts_dist), and read and write through those",
    )
    parser.add_argument(
        "--retention",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="delete spans older than this (e.g. 72h, 7d); with ClickHouse, the TTL of the "
        "tables threadline creates; default: keep all",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allow browser exporters from this origin (repeatable; '*' for any; default: loopback origins)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=_size,
        metavar="BYTES",
        default=None,
        help="largest OTLP request accepted (default 16 MiB)",
    )
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        default=None,
        help="once every port listens, write JSON saying where (api, otlp_http, otlp_grpc, "
        "ports, db, pid) to PATH; removed first, and on exit",
    )
    parser.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help="require Authorization: Bearer TOKEN on every port (OTLP/HTTP, OTLP/gRPC metadata, "
        "the API; the web UI asks once); TOKEN or the path of a file holding it; default "
        "$THREADLINE_TOKEN, else none",
    )
    parser.add_argument(
        "--read-token",
        default=None,
        metavar="TOKEN",
        help="a token that only reads (API and web UI); default $THREADLINE_READ_TOKEN",
    )
    parser.add_argument(
        "--write-token",
        default=None,
        metavar="TOKEN",
        help="a token that only exports (OTLP); default $THREADLINE_WRITE_TOKEN",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name accepted besides loopback ones while bound to loopback (repeatable; "
        "other Host headers get 403, against DNS rebinding)",
    )
    parser.add_argument("--ready-line", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from threadline.server.serving import PortInUse, Server
    from threadline.server.storage import StoreUnavailable, StoreURLError
    from threadline.server.tokens import TokenError, token_value

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ready_file = Path(args.ready_file) if args.ready_file else None
    if ready_file is not None:
        try:  # a file left by an earlier run must not read as this one being ready
            ready_file.unlink(missing_ok=True)
        except OSError as exc:
            print(
                f"threadline serve: cannot replace --ready-file {ready_file}: {exc}",
                file=sys.stderr,
            )
            return 1
        if not ready_file.parent.is_dir():
            print(
                f"threadline serve: --ready-file {ready_file}: no directory {ready_file.parent}",
                file=sys.stderr,
            )
            return 1
    try:
        tokens = {
            name: token_value(getattr(args, name) or os.environ.get(env), option)
            for name, option, env in (
                ("token", "--token", "THREADLINE_TOKEN"),
                ("read_token", "--read-token", "THREADLINE_READ_TOKEN"),
                ("write_token", "--write-token", "THREADLINE_WRITE_TOKEN"),
            )
        }
    except TokenError as exc:
        print(f"threadline serve: {exc}", file=sys.stderr)
        return 2
    try:
        server = Server(
            host=args.host,
            port=args.port,
            otlp_http_port=args.otlp_http_port,
            otlp_grpc_port=args.otlp_grpc_port,
            db=args.store or args.db,
            retention_ns=args.retention,
            clickhouse={
                "clickhouse_database": args.clickhouse_database,
                "clickhouse_table": args.clickhouse_traces_table,
                "clickhouse_cluster": args.clickhouse_cluster,
            },
            cors_origins=args.cors_origin,
            max_request_bytes=args.max_request_bytes,
            allowed_hosts=args.allowed_host,
            token=tokens["token"],
            read_token=tokens["read_token"],
            write_token=tokens["write_token"],
        )
    except (PortInUse, StoreUnavailable, StoreURLError) as exc:
        print(f"threadline serve: {exc}", file=sys.stderr)
        return 1
    urls = server.urls
    _banner(server)
    if args.ready_line:
        print(
            f"threadline serve ready api={urls.api} otlp_http={urls.otlp_http} otlp_grpc={urls.otlp_grpc} db={server.db}",
            flush=True,
        )
    failed: list[OSError] = []

    def ready() -> None:
        if ready_file is None:
            return
        try:
            write_ready_file(ready_file, server)
        except OSError as exc:  # a script waits on this file: do not serve without it
            failed.append(exc)
            server.exit_soon()

    try:
        server.run(on_ready=ready)
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    if failed:
        print(
            f"threadline serve: cannot write --ready-file {ready_file}: {failed[0]}",
            file=sys.stderr,
        )
        return 1
    return 0


def write_ready_file(path: Path, server: Any) -> None:
    """The server's addresses as JSON, written whole: a script polling for the file never reads
    half of it (written beside it, then renamed over it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(server.ready_document(), indent=2) + "\n")
    os.replace(partial, path)


def _banner(server) -> None:
    from rich.console import Console
    from rich.table import Table

    urls = server.urls
    table = Table.grid(padding=(0, 2))
    table.add_row("[bold]web UI + Jaeger API[/]", urls.api)
    table.add_row("[bold]OTLP/HTTP[/]", f"{urls.otlp_http}/v1/traces")
    if urls.otlp_grpc:
        table.add_row("[bold]OTLP/gRPC[/]", urls.otlp_grpc)
    table.add_row("[bold]database[/]", server.db)
    console = Console(highlight=False)
    console.print("[bold green]threadline serve[/] listening")
    console.print(table)
    console.print(f"export OTEL_EXPORTER_OTLP_ENDPOINT={urls.otlp_http}", soft_wrap=True)
