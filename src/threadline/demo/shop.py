"""The demo's processes: start the shop's services on loopback, send it checkouts, stop it.

    with Shop(endpoint="http://127.0.0.1:4318") as shop:
        outcome = shop.checkout(user="ada", item="tea")
        outcome.trace_id          # from the gateway's Server-Timing header

Every HTTP service's listening socket is bound here, on port 0, before it starts, and handed
to it as an inherited file descriptor; payments, a gRPC server, binds a free port itself and
says which when it is ready, so it starts first and the rest all at once after it. Nothing needs
a fixed port. The services' SQLite databases live in a temporary directory of the shop's.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, cast

from threadline.demo.outcome import Outcome
from threadline.demo.services import PEERS, SERVICES

SERVICE_MAIN = "import sys; from threadline.demo.services import main; sys.exit(main())"


class ShopError(RuntimeError):
    pass


GRPC = ("payments",)  # services that bind their own port and announce it


@dataclass
class _Service:
    name: str
    sock: socket.socket | None  # None: a gRPC service, whose url its ready line gives
    proc: subprocess.Popen | None = None
    log: Any = None
    url: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.sock is not None:
            self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"


class Shop:
    """The services of the demo shop, each in its own OS process, exporting to `endpoint`."""

    def __init__(
        self,
        endpoint: str,
        *,
        cooldown: float = 1.0,
        sample_ratio: float | None = None,
        start_timeout: float = 60,
    ) -> None:
        if sample_ratio is not None and not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be in [0, 1], not {sample_ratio!r}")
        self.endpoint = endpoint
        self.cooldown = cooldown
        self.sample_ratio = sample_ratio
        self.start_timeout = start_timeout
        self.services: dict[str, _Service] = {}
        # the services' logs and databases
        self._logs = tempfile.TemporaryDirectory(prefix="threadline-demo-")
        self._client = None

    @property
    def gateway(self) -> str:
        return self.services["gateway"].url

    @property
    def web(self) -> str:
        """The live order page (click "Checkout" in a browser)."""
        return self.services["web"].url + "/"

    def start(self) -> Shop:
        for name in SERVICES:
            sock = None
            if name not in GRPC:
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sock.listen(128)
            self.services[name] = _Service(name, sock)
        ready: queue.Queue[tuple[str, str]] = queue.Queue()
        try:
            first = [self.services[n] for n in GRPC]
            for svc in first:
                self._spawn(svc, ready)
            self._await_ready(ready, {svc.name for svc in first})
            rest = [svc for svc in self.services.values() if svc.name not in GRPC]
            for svc in rest:
                self._spawn(svc, ready)
            self._await_ready(ready, {svc.name for svc in rest})
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, svc: _Service, ready: queue.Queue) -> None:
        args = [sys.executable, "-c", SERVICE_MAIN, svc.name]
        if svc.sock is not None:
            args += ["--fd", str(svc.sock.fileno())]
        args += ["--endpoint", self.endpoint, "--cooldown", str(self.cooldown)]
        args += ["--data", self._logs.name]
        for peer in PEERS.get(svc.name, ()):
            args += ["--peer", f"{peer}={self.services[peer].url}"]
        svc.log = open(os.path.join(self._logs.name, f"{svc.name}.log"), "w+b")  # noqa: SIM115
        # Export every 200 ms (not 5 s) so traces show up in the UI while the demo runs.
        env = {
            **os.environ,
            "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "200"),
        }
        if self.sample_ratio is not None:
            # Every service gets the ratio; only the gateway, where traces start, uses it: the
            # others follow the sampled flag they receive (one decision per trace).
            env["OTEL_TRACES_SAMPLER_ARG"] = str(self.sample_ratio)
        svc.proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=svc.log,
            pass_fds=[svc.sock.fileno()] if svc.sock is not None else [],
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the services in order
            text=True,
        )

        def read(proc: subprocess.Popen = svc.proc, name: str = svc.name) -> None:
            for line in cast(IO[str], proc.stdout):  # stdout=PIPE, text=True
                ready.put((name, line.strip()))
            ready.put((name, "exited"))

        threading.Thread(target=read, name=f"demo-{svc.name}-stdout", daemon=True).start()

    def _await_ready(self, ready: queue.Queue, waiting: set[str]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while waiting:
            try:
                name, line = ready.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ShopError(
                    f"services did not start within {self.start_timeout}s: {sorted(waiting)}"
                ) from None
            if line == f"ready {name}":
                waiting.discard(name)
            elif line.startswith(f"ready {name} "):  # a gRPC service names its address
                self.services[name].url = line.split()[2]
                waiting.discard(name)
            elif line == "exited":
                raise ShopError(f"service {name} exited while starting:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.services[name].log
        if log is None:
            return ""
        log.flush()
        log.seek(0)
        return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        """Stop every service (front to back), letting each finish its requests and export its
        spans; kill what does not stop in time."""
        if self._client is not None:
            self._client.close()
            self._client = None
        order = [n for n in reversed(SERVICES) if n in self.services]
        for name in order:
            proc = self.services[name].proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in order:
            svc = self.services[name]
            if svc.proc is not None:
                try:
                    svc.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    svc.proc.kill()
                    svc.proc.wait(10)
            if svc.sock is not None:
                svc.sock.close()
            if svc.log is not None:
                svc.log.close()
        self.services.clear()
        self._logs.cleanup()

    def __enter__(self) -> Shop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- customers ---------------------------------------------------------------------------

    def checkout(self, user: str = "ada", item: str = "tea", qty: int = 1) -> Outcome:
        import httpx

        from threadline.integrations.http import parse_server_timing

        if self._client is None:
            self._client = httpx.Client(timeout=30)
        r = self._client.get(
            f"{self.gateway}/checkout", params={"user": user, "item": item, "qty": qty}
        )
        traceparent = parse_server_timing(r.headers.get("server-timing"))
        parts = traceparent.split("-") if traceparent else None
        retry = r.headers.get("retry-after")
        return Outcome(
            status=r.status_code,
            body=r.json(),
            trace_id=parts[1] if parts else None,
            retry_after=float(retry) if retry else None,
            sampled=bool(int(parts[3], 16) & 1) if parts else False,
        )

    def run(self, n: int, progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """n checkouts, one after another; a 503 with Retry-After is honoured, as polite
        clients do (which is what lets the payments circuit close again)."""
        users = ("ada", "grace", "alan", "barbara", "edsger")
        items = ("tea", "coffee", "cocoa")
        out = []
        for i in range(n):
            outcome = self.checkout(users[i % len(users)], items[i % len(items)], 1 + i % 3)
            out.append(outcome)
            if progress is not None:
                progress(outcome)
            if outcome.retry_after and i < n - 1:
                time.sleep(outcome.retry_after)  # the server asked us to wait this long
        return out
