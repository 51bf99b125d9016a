"""The `threadline` command. Each subcommand lives in the module that owns it and is imported
only when used, so `threadline --help` stays instant and pulls in no server code."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module exposing add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("threadline.demo.command", "run the multi-service demo and show its traces"),
    "show": ("threadline.report.show", "print one trace as a terminal waterfall"),
    "traces": ("threadline.report.traces", "list recent traces"),
    "check": (
        "threadline.report.check",
        "completeness and broken hops; non-zero under a threshold",
    ),
    "serve": (
        "threadline.server.command",
        "receive OTLP, store traces, serve the Jaeger API and web UI",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="One connected trace across threads, processes, queues and services, on top "
        "of OpenTelemetry. `serve` receives and stores traces; `traces`, `show` and `check` read "
        "them from it; `demo` runs a multi-service example.",
        epilog="`threadline COMMAND --help` lists a command's options.",
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        subs.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help or a clear error for unknown commands
        parser.print_help()
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    description = getattr(module, "DESCRIPTION", COMMANDS[name][1])  # a module may say more
    sub = argparse.ArgumentParser(prog=f"threadline {name}", description=description)
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
