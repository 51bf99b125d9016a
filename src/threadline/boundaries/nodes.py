"""Nodes: calls to objects and callables served by a multiprocessing manager (``BaseManager``,
``SyncManager``) in another OS process, possibly on another machine.

Calling a proxy is the Python analog of calling a GenServer on another Erlang node: the call
leaves as a CLIENT span "<typeid>/<method>" in the caller, the context travels inside the
request, and the node serves it in a SERVER span of the same trace, around exactly that call.
A node that calls a further node does so inside its SERVER span, so the trace stays connected.

The context rides in the request's argument tuple: it pickles to the plain tuple plus the W3C
carrier, and unpickling in the node hands the carrier to the connection that is reading the
request. Authentication is untouched (it happens before any request), and a request from an
untraced client is served as before, in a SERVER span that starts its own trace.

Only a node running this boundary can read such a request, so a client asks each server
address once (a request named ASK, which such a node answers and any other refuses as
unrecognised) and sends plain requests to a node that does not understand: the call works, and
the caller still has its CLIENT span.
"""

from __future__ import annotations

import os
import socket
import threading
from multiprocessing import managers
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from threadline import seam, semconv
from threadline.boundaries._renamed import renamed
from threadline.seam import Handoff, capture, resume, start_span

SYSTEM = "multiprocessing"
_FAILED = ("#ERROR", "#TRACEBACK", "#UNSERIALIZABLE")

_originals: dict[str, Any] = {}
_lock = threading.Lock()
_arrived = threading.local()  # (carrier, typeid) of the request this thread is unpickling
_creating = threading.local()  # the manager whose _create is calling dispatch in this thread

# Asked of a server before any context is sent to it: a node with this boundary answers it as
# the no-op 'dummy'; any other says '#TRACEBACK ... unrecognized'.
ASK = semconv.CARRIES_CONTEXT
_understood: dict[Any, bool] = {}  # server address -> whether it reads a carried context


class _Carried(tuple):
    """A request's arguments with the caller's context; pickles to (args, carrier, typeid)."""

    handoff: Handoff
    typeid: str

    def __reduce__(self):
        return (_arrive, (tuple(self), self.handoff.carrier, self.typeid))


def _carry(args: tuple, typeid: str) -> _Carried:
    carried = _Carried(args)
    carried.handoff = capture()
    carried.typeid = typeid
    return carried


def _arrive(args: tuple, carrier: dict[str, str], typeid: str) -> tuple:
    _arrived.value = (carrier, typeid)
    return args


def _take_arrived() -> tuple[dict[str, str] | None, str | None]:
    value = getattr(_arrived, "value", None)
    _arrived.value = None
    return value or (None, None)


def _attributes(typeid: str, method: str) -> dict[str, Any]:
    return {"rpc.system": SYSTEM, "rpc.service": typeid, "rpc.method": method}


# -- the caller's side -------------------------------------------------------------------------


def _server(attrs: dict[str, Any], address: Any) -> dict[str, Any]:
    if isinstance(address, tuple) and len(address) >= 2:
        attrs["server.address"], attrs["server.port"] = str(address[0]), int(address[1])
    elif isinstance(address, str):  # a Unix socket or a named pipe
        attrs["server.address"] = address
    return attrs


def _peer(conn: Any) -> Any:
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            return sock.getpeername()
    except (OSError, ValueError, AttributeError):
        return None


def _understands(address: Any, authkey: bytes | None, client: Any) -> bool:
    """Whether the server at `address` reads a carried context, asked once per address. When it
    cannot be asked (unreachable, wrong authkey) the answer is no, left unrecorded: the call
    itself then fails as it always would."""
    try:
        key = address if isinstance(address, str) else tuple(address)
    except TypeError:
        return False
    known = _understood.get(key)
    if known is None:
        try:
            conn = client(address, authkey=authkey)
        except Exception:  # noqa: BLE001 - the call will say what is wrong
            return False
        try:
            _originals["dispatch"](conn, None, ASK)
            known = True
        except managers.RemoteError:  # '#TRACEBACK ... unrecognized': a node without us
            known = False
        except Exception:  # noqa: BLE001
            return False
        finally:
            conn.close()
        _understood[key] = known
    return known


def _callmethod(self, methodname, args=(), kwds={}):  # noqa: B006 - the stdlib's signature
    if not seam.enabled():
        return _originals["_callmethod"](self, methodname, args, kwds)
    typeid = self._token.typeid
    address = self._token.address
    attrs = _server(_attributes(typeid, methodname), address)
    with start_span(f"{typeid}/{methodname}", attributes=attrs, kind=SpanKind.CLIENT):
        if _understands(address, self._authkey, self._Client):
            args = _carry(tuple(args), typeid)
        return _originals["_callmethod"](self, methodname, args, kwds)


def _create(self, typeid, /, *args, **kwds):
    _creating.manager = self  # dispatch, below, sends the request: tell it where to
    try:
        return _originals["_create"](self, typeid, *args, **kwds)
    finally:
        _creating.manager = None


def _dispatch(c, id, methodname, args=(), kwds={}):  # noqa: B006 - the stdlib's signature
    # Only 'create' runs user code (a registered callable); incref/decref/shutdown are plumbing.
    if methodname != "create" or not args or not seam.enabled():
        return _originals["dispatch"](c, id, methodname, args, kwds)
    typeid = args[0]
    attrs = _server(_attributes(typeid, "create"), _peer(c))
    manager = getattr(_creating, "manager", None)
    with start_span(f"{typeid}/create", attributes=attrs, kind=SpanKind.CLIENT):
        if manager is not None and _understands(
            manager._address,  # noqa: SLF001
            manager._authkey,  # noqa: SLF001
            manager._Client,  # noqa: SLF001
        ):
            args = _carry(tuple(args), typeid)
        return _originals["dispatch"](c, id, methodname, args, kwds)


# -- the node's side ---------------------------------------------------------------------------


class _ServedConnection:
    """A node's end of one client connection: each request read opens a SERVER span, which the
    reply closes (a manager's connection strictly alternates request and reply)."""

    __slots__ = ("_conn", "_server", "_call")

    def __init__(self, conn: Any, server: Any) -> None:
        self._conn = conn
        self._server = server
        self._call: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def recv(self) -> Any:
        self._finish(None)
        _arrived.value = None
        request = self._conn.recv()
        if type(request) is tuple and len(request) == 4 and request[1] == ASK:
            return (request[0], "dummy", (), {})  # yes: this node reads a carried context
        carrier, typeid = _take_arrived()
        name = self._name(request, typeid)
        if name is not None:
            service, method = name
            self._call = resume(
                carrier,
                f"{service}/{method}",
                kind=SpanKind.SERVER,
                attributes=_attributes(service, method),
            )
            self._call.__enter__()
        return request

    def send(self, msg: Any) -> None:
        try:
            self._conn.send(msg)
        finally:
            self._finish(msg)

    def _name(self, request: Any, typeid: str | None) -> tuple[str, str] | None:
        try:
            ident, method, args, _ = request
        except (TypeError, ValueError):
            return None
        if ident is None:  # a request to the manager itself: only 'create' runs user code
            if method != "create" or not args:
                return None
            return str(args[0]), "create"
        if typeid is None:  # an untraced client: name the service after the object's type
            entry = self._server.id_to_obj.get(ident) or self._server.id_to_local_proxy_obj.get(
                ident
            )
            typeid = type(entry[0]).__qualname__ if entry else "object"
        return typeid, str(method)

    def _finish(self, msg: Any) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        if isinstance(msg, tuple) and msg and msg[0] in _FAILED:
            detail = msg[1]
            span = trace.get_current_span()
            if isinstance(detail, BaseException):
                span.record_exception(detail)
                text = f"{type(detail).__name__}: {detail}"
            else:  # a formatted traceback: its last line names the exception
                text = str(detail).strip().splitlines()[-1] if str(detail).strip() else msg[0]
            span.set_status(trace.Status(trace.StatusCode.ERROR, text))
        call.__exit__(None, None, None)


def _handle_request(self, conn):
    served = conn if isinstance(conn, _ServedConnection) else _ServedConnection(conn, self)
    try:
        return _originals["handle_request"](self, served)
    finally:
        served._finish(None)  # noqa: SLF001 - this module's own connection wrapper


# -- install -----------------------------------------------------------------------------------

_PATCHES = [
    (managers.BaseProxy, "_callmethod", _callmethod),
    (managers, "dispatch", _dispatch),
    (managers.BaseManager, "_create", _create),
    (managers.Server, "handle_request", _handle_request),
]


def instrument() -> None:
    """Patch the multiprocessing managers' client and server sides (once)."""
    with _lock:
        if _originals:
            return
        for owner, attr, patched in _PATCHES:
            _originals[attr] = getattr(owner, attr)
            setattr(owner, attr, patched)


def uninstrument() -> None:
    """Put every original back. Idempotent."""
    with _lock:
        for owner, attr, _ in _PATCHES:
            if attr in _originals:
                setattr(owner, attr, _originals[attr])
        _originals.clear()


def instrumented() -> bool:
    """Whether this boundary is installed."""
    return bool(_originals)


# The names of 0.1, kept for one minor release.
install = renamed(instrument, "threadline.boundaries.nodes.install")
uninstall = renamed(uninstrument, "threadline.boundaries.nodes.uninstall")
installed = renamed(instrumented, "threadline.boundaries.nodes.installed")
