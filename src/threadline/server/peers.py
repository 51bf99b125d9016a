"""What an uninstrumented peer is called: the database or external service a CLIENT span calls
when no span of the peer's own answers it.

A CLIENT span with no child span in its trace (nothing instrumented answered) that carries

- `db.system.name` (or the older `db.system`) with `db.namespace` or `server.address`: a
  database, named by `peer.service`, else `db.namespace`, else `server.address[:server.port]`;
- else `peer.service`, `rpc.service` or `server.address`: an external service, named by the
  first of them present (`server.address` with `:server.port` when given).

As Jaeger draws `peer.service` on a leaf span, the calling service gets an edge to that peer.
The one statement of the naming rule: the analysis reads it over spans, each store over the
attribute texts its SQL selects (`KEYS`, in this order). Dependency-free but for the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from threadline.server.model import KIND_CLIENT

DATABASE, EXTERNAL = "database", "external"

KEYS = (
    "db.system.name",
    "db.system",
    "db.namespace",
    "peer.service",
    "rpc.service",
    "server.address",
    "server.port",
)


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    kind: str  # DATABASE | EXTERNAL
    system: str = ""  # the database's db.system(.name), "" for an external service


def peer_of(texts: Sequence[str | None]) -> Peer | None:
    """The peer named by the attribute texts of `KEYS` (None or "" where absent)."""
    system, old_system, namespace, service, rpc, address, port = (t or "" for t in texts)
    system = system or old_system
    where = f"{address}:{port}" if address and port else address
    if system and (namespace or address):
        return Peer(service or namespace or where, DATABASE, system)
    name = service or rpc or where
    return Peer(name, EXTERNAL) if name else None


def text(value: Any) -> str:
    """An attribute value as both stores give it back as text: strings as they are, integers in
    decimal, booleans as true/false; anything else counts as absent."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else ""


def span_peer(kind: int, attributes: Mapping[str, Any]) -> Peer | None:
    """The peer a span calls, if it is a CLIENT span naming one (its leafness is the caller's
    to check: a span with a child was answered by an instrumented service)."""
    if kind != KIND_CLIENT:
        return None
    return peer_of([text(attributes.get(k)) for k in KEYS])
