"""A running threadline server: store, ingest, OTLP/HTTP, OTLP/gRPC and the query app.

`Server(...)` binds every port up front (a taken port fails at once with `PortInUse`, naming
the option); `run()` serves in the calling thread until SIGINT/SIGTERM, `start()` serves in a
background thread. `start(...)` / `spawn(...)` at module level give a started server on
ephemeral ports (in this process / in a child process running `threadline serve`), as context
managers, with their URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("threadline.server")


class PortInUse(OSError):
    pass


def default_db_path() -> str:
    """One DuckDB file in the user's data directory ($XDG_DATA_HOME or ~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "threadline", "traces.duckdb")


def _bind(host: str, port: int, option: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
    )  # not REUSEPORT: two servers must clash
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}"
        ) from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url(host: str, port: int) -> str:
    return f"http://{_hostport(host, port)}"


@dataclass(frozen=True)
class URLs:
    api: str  # query API + UI (Jaeger data source URL)
    otlp_http: str  # OTLP/HTTP base (exporters append /v1/traces)
    otlp_grpc: str  # host:port for OTLP/gRPC exporters


class Server:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 16686,
        otlp_http_port: int = 4318,
        otlp_grpc_port: int | None = 4317,
        db: str | None = None,
        retention_ns: int | None = None,
        cors_origins: Iterable[str] | None = None,
        max_request_bytes: int | None = None,
        max_queued_spans: int = 200_000,
        clickhouse: dict[str, Any] | None = None,
        token: str | None = None,
        read_token: str | None = None,
        write_token: str | None = None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        import grpc

        from threadline.server.ingest.otlp_grpc import grpc_handler
        from threadline.server.ingest.queue import MAX_REQUEST_BYTES, Ingest
        from threadline.server.storage import open_store
        from threadline.server.storage.clickhouse_connection import redact
        from threadline.server.web import app as web_app
        from threadline.server.web.access import Access, is_loopback_host

        self.access = Access(
            token=token,
            read_token=read_token,
            write_token=write_token,
            loopback=is_loopback_host(host),
            allowed_hosts=allowed_hosts,
        )
        if not self.access.loopback and not self.access.tokens:
            log.warning(
                "listening on %s without a token: anyone who reaches it may read and export "
                "traces; set --token (or THREADLINE_TOKEN)",
                host,
            )
        self.max_request_bytes = max_request_bytes or MAX_REQUEST_BYTES
        self.db = db or default_db_path()
        self._sockets = [
            _bind(host, port, "--port"),
            _bind(host, otlp_http_port, "--otlp-http-port"),
        ]
        self._grpc = None
        grpc_port = 0
        if otlp_grpc_port is not None:
            if otlp_grpc_port:  # a taken port is said the way the others are, before gRPC logs it
                try:
                    _bind(host, otlp_grpc_port, "--otlp-grpc-port").close()
                except PortInUse:
                    self._close_sockets()
                    raise
            self._grpc = grpc.server(
                ThreadPoolExecutor(max_workers=8, thread_name_prefix="threadline-grpc"),
                options=[
                    ("grpc.so_reuseport", 0),
                    ("grpc.max_receive_message_length", self.max_request_bytes),
                ],
            )
            try:
                grpc_port = self._grpc.add_insecure_port(_hostport(host, otlp_grpc_port))
            except RuntimeError:
                grpc_port = 0
            if not grpc_port:
                self._close_sockets()
                raise PortInUse(
                    f"cannot listen on {host}:{otlp_grpc_port} (--otlp-grpc-port): address in use"
                )
        try:
            self.store = open_store(self.db, retention_ns=retention_ns, **(clickhouse or {}))
        except Exception:
            self._close_sockets()
            raise
        self.db = redact(self.db)  # what banners and ready lines show
        self.ingest = Ingest(
            self.store,
            max_queued_spans=max_queued_spans,
            retention_ns=None if self.store.retention_by_ttl else retention_ns,
        )
        if self._grpc is not None:
            self._grpc.add_generic_rpc_handlers(
                (grpc_handler(self.ingest, allows=self.access.grpc_allows),)
            )
        self.app = web_app.build_app(
            self.store,
            self.ingest,
            cors_origins=cors_origins,
            max_request_bytes=self.max_request_bytes,
            access=self.access,
        )
        self.otlp_app = web_app.otlp_app(
            self.ingest, cors_origins, self.max_request_bytes, self.access
        )
        ports = [s.getsockname()[1] for s in self._sockets]
        self.urls = URLs(
            _url(host, ports[0]),
            _url(host, ports[1]),
            _hostport(host, grpc_port) if grpc_port else "",
        )
        self._servers: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopped = False

    def _close_sockets(self) -> None:
        for s in self._sockets:
            s.close()

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until asked to exit; on_ready runs once every port listens."""
        import uvicorn

        class _Uvicorn(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # the owner of the loop handles signals for all servers
                yield

        def server(app: Any) -> _Uvicorn:
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
            return _Uvicorn(config)

        self._loop = asyncio.get_running_loop()
        self._servers = [server(self.app), server(self.otlp_app)]
        if self._grpc is not None:
            self._grpc.start()
        tasks = [
            asyncio.create_task(s.serve(sockets=[sock]))
            for s, sock in zip(self._servers, self._sockets, strict=True)
        ]
        while not all(s.started for s in self._servers) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        self._started.set()
        if on_ready is not None and not any(t.done() for t in tasks):
            on_ready()
        await asyncio.gather(*tasks)

    def _ask_exit(self) -> None:
        for s in self._servers:
            s.should_exit = True

    def exit_soon(self) -> None:
        """Stop serving (from the serving loop's thread, an on_ready callback say)."""
        self._ask_exit()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in this (main) thread until SIGINT or SIGTERM, then shut down cleanly;
        on_ready runs once every port listens."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._ask_exit)
            await self.serve(on_ready)

        try:
            asyncio.run(main())
        finally:
            self._shutdown()

    def start(self, timeout: float = 30) -> Server:
        """Serve in a background thread; returns once every port answers."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.serve()), name="threadline-serve", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("threadline server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._ask_exit)
            self._thread.join(30)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait(10)
        self.ingest.close()
        self.store.close()
        self._close_sockets()

    def ready_document(self) -> dict[str, Any]:
        """Where this server listens, as `--ready-file` writes it."""

        def port(url: str) -> int | None:
            return int(url.rsplit(":", 1)[1].rstrip("/")) if url else None

        return {
            "api": self.urls.api,
            "otlp_http": self.urls.otlp_http,
            "otlp_grpc": self.urls.otlp_grpc,
            "ports": {
                "api": port(self.urls.api),
                "otlp_http": port(self.urls.otlp_http),
                "otlp_grpc": port(self.urls.otlp_grpc),
            },
            "db": self.db,
            "pid": os.getpid(),
        }

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(db: str = ":memory:", host: str = "127.0.0.1", **kwargs: Any) -> Server:
    """A server on ephemeral ports in a background thread of this process (use as a context
    manager, or call .stop()). `server.urls` has its addresses."""
    kwargs.setdefault("port", 0)
    kwargs.setdefault("otlp_http_port", 0)
    kwargs.setdefault("otlp_grpc_port", 0)
    return Server(host=host, db=db, **kwargs).start()


class Spawned:
    """`threadline serve` in a child process (its own interpreter: kill -9 really kills it)."""

    def __init__(self, proc: subprocess.Popen, urls: URLs, db: str) -> None:
        self.proc, self.urls, self.db = proc, urls, db

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        self.proc.kill()
        self.proc.wait(30)

    def __enter__(self) -> Spawned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_READY = re.compile(r"^threadline serve ready api=(\S+) otlp_http=(\S+) otlp_grpc=(\S*) db=(.*)$")


def serve_argv(db: str, *args: str) -> list[str]:
    """argv of `threadline serve --db DB` on ephemeral ports; later args win (argparse keeps the
    last of a repeated option), so `serve_argv(db, "--port", "16686")` pins one port."""
    ephemeral = ["--port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0"]
    return [sys.executable, "-m", "threadline.cli", "serve", "--db", db, *ephemeral, *args]


def spawn(db: str, *args: str, timeout: float = 60) -> Spawned:
    """Start `threadline serve --db DB` on ephemeral ports in a child process."""
    cmd = serve_argv(db, "--ready-line", *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready: list[re.Match] = []
    seen = threading.Event()

    def read_stdout() -> None:  # also keeps draining, so the child never blocks on a full pipe
        for line in proc.stdout:  # type: ignore[union-attr]
            m = _READY.match(line.strip())
            if m and not ready:
                ready.append(m)
                seen.set()
        seen.set()  # the child closed its output: it exited

    threading.Thread(target=read_stdout, daemon=True).start()
    seen.wait(timeout)
    if ready:
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        m = ready[0]
        return Spawned(proc, URLs(m[1], m[2], m[3]), m[4])
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise RuntimeError(f"threadline serve did not start: {err.strip()[-2000:]}")
