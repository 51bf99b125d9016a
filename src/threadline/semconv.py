"""threadline's own vocabulary: every attribute, event and link name it writes, and the limits
that shape what it writes. Dependency-free, so the core, the boundaries, the integrations, the
server and the testing plugin all import their names from here and never spell them again.

OpenTelemetry's own names (``messaging.*``, ``process.*``, ``db.*``) are not repeated here; they
come from the semantic conventions and are written as the spec spells them where they are used.
"""

from __future__ import annotations

# -- spans announced before they end ------------------------------------------------------------

PENDING = "threadline.pending"
"""True on the zero-length copy of a span sent when it starts. The backend shows it as
incomplete until the completed span with the same ids supersedes it (docs/glossary.md)."""

INCOMPLETE = "threadline.incomplete"
"""Tag the query API puts on a span that only its pending copy represents."""

# -- boundaries -----------------------------------------------------------------------------------

BOUNDARY = "threadline.boundary"
"""The kind of boundary a span was resumed across (``processes``, ``ray``, ...)."""

WORKER_DIED = "threadline.worker.died"
"""Event on the sender's span (or a short span of that name) when the worker running its task
died before the task ended."""

WORKER_TASK = "threadline.worker.task"
"""The task a dead worker was running, on its ``threadline.worker.died`` event."""

LINKS_DROPPED = "threadline.links.dropped"
"""How many senders a batch span could not link to past MAX_LINKS (after de-duplication)."""

MAX_LINKS = 128
"""The SDK's default span link limit: a batch span links at most this many senders."""

CARRIES_CONTEXT = "threadline.carries_context"
"""The question a node client asks a manager server once: does it take a traced request?"""

# -- HTTP trust -----------------------------------------------------------------------------------

TRUST = "threadline.trust"
"""How a server treated the caller's context when it did not honour it as parent (``link``)."""

REMOTE_CONTEXT = "threadline.remote_context"
"""Key under which an untrusted caller's context waits in the ASGI scope / WSGI environ."""

# -- live sessions --------------------------------------------------------------------------------

SESSION_ID = "threadline.session.id"
SESSION_RELATION = "threadline.session.relation"
LINK = "threadline.link"
"""Attribute on a link saying what it links to (``session``)."""

# -- integrations ---------------------------------------------------------------------------------

EVENT_REPLAY = "threadline.event.replay"
"""True on an event handler's span when it runs as part of a replay (it starts clean)."""

MQTT_CARRIED = "threadline.mqtt.carried"
"""Whether the MQTT message could carry the context (MQTT 5 user properties)."""

# -- logs -----------------------------------------------------------------------------------------

LOG_EVENT = "log"
"""Event a logging record at WARNING or above becomes on the current span (opt-in,
``threadline.integrations.logs.install(span_events=True)``)."""

LOG_SEVERITY = "log.severity"
"""The record's level name (``WARNING``, ``ERROR``, ``CRITICAL``), on a ``log`` event."""

LOG_MESSAGE = "log.message"
"""The record's message with its arguments filled in, on a ``log`` event."""

LOG_LOGGER = "log.logger"
"""The name of the logger that made the record, on a ``log`` event."""

# -- analysis -------------------------------------------------------------------------------------

CLOCK_CORRECTION = "threadline.clock.correction_ns"
"""Nanoseconds a span was shifted by clock-skew correction (opt-in, browser spans)."""
