"""The ``eventsourcing`` library: applications whose stored events carry the trace of the command
that saved them, and followers that handle each event in a span linked to it.

    from threadline.integrations.eventsourcing import Traced

    class DogSchool(Traced, Application):          # save(): PRODUCER "send DogSchool"
        ...
    class Counters(Traced, ProcessApplication):    # each event: CONSUMER "process DogSchool",
        @singledispatchmethod                      # a new trace linked to that send span
        def policy(self, domain_event, processing_event): ...

``Traced`` goes first among the bases. It gives the application a ``TracingMapper`` (set
``MAPPER_TOPIC=threadline.integrations.eventsourcing:TracingMapper`` to use one without the
mixin), which writes the carrier into each stored event's state under ``"__trace__"`` (inside
the library's encoding, compression and encryption, like the rest of the state) and takes it out
again when the event is read, so domain events and aggregates are exactly what the library makes.
Snapshots carry none.

A follower's ``process_event`` (``ProcessApplication``, ``EventSourcedProjection`` under a
projection runner) runs in a CONSUMER span ``process <leader name>`` with ``relation =
trace_relation`` ("link" unless the class says "child" or "none"); ``trace_replay = True`` (on
the class or the instance, while rebuilding) makes spans with no link. Events its policy
collects are stored under that span. Elsewhere (a ``Projection``, a runner of your own):
``with events.handle(metadata(domain_event), "project dogs"):``. Needs the ``events`` extra.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

try:
    from eventsourcing.domain import Snapshot
    from eventsourcing.persistence import Mapper, StoredEvent
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "threadline.integrations.eventsourcing needs eventsourcing: "
        "pip install 'threadline[events]'"
    ) from exc

from threadline.integrations import events
from threadline.seam import Relation, inject

if TYPE_CHECKING:
    # What the mixin is mixed into, for the checker: the application's methods it extends.
    from eventsourcing.system import ProcessApplication as _Application
else:
    _Application = object

__all__ = ["STATE_KEY", "Traced", "TracingMapper", "metadata"]

STATE_KEY = "__trace__"  # the carrier's name in a stored event's state
SYSTEM = "eventsourcing"

# The carriers of events as read, by identity: an event's own __dict__ is what its aggregate is
# rebuilt from, so the carrier is kept beside it for as long as the event lives.
_carriers: dict[int, dict[str, str]] = {}


def _remember(event: object, carrier: Any) -> None:
    try:
        weakref.finalize(event, _carriers.pop, id(event), None)
    except TypeError:  # an event type without weak references: read as untraced
        return
    _carriers[id(event)] = carrier


def metadata(domain_event: object) -> dict[str, Any] | None:
    """``{events.KEY: carrier}`` for ``domain_event``, an event read through a TracingMapper (or
    by a plain mapper, which leaves the carrier in its state), for ``events.handle``; None when
    it carries none."""
    carrier = _carriers.get(id(domain_event))
    if carrier is None:
        carrier = getattr(domain_event, "__dict__", {}).get(STATE_KEY)
    return None if carrier is None else {events.KEY: carrier}


class TracingMapper(Mapper):
    """A ``Mapper`` that stores the trace of now with each event and takes it out when reading."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = vars(domain_event)
        carrier = {} if isinstance(domain_event, Snapshot) else inject()
        if carrier or STATE_KEY in state:
            # A shallow copy with the carrier: the event object itself stays as it was.
            copy = object.__new__(type(domain_event))
            new_state = {k: v for k, v in state.items() if k != STATE_KEY}
            if carrier:
                new_state[STATE_KEY] = carrier
            object.__setattr__(copy, "__dict__", new_state)
            domain_event = copy
        return super().to_stored_event(domain_event)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        carrier = vars(domain_event).pop(STATE_KEY, None)
        if carrier is not None:
            _remember(domain_event, carrier)
        return domain_event


class Traced(_Application):
    """Mixin for an ``eventsourcing`` application (first among its bases): traced saves, and
    for a follower, a span per processed event."""

    trace_relation: Relation = "link"
    trace_replay: bool = False

    def construct_mapper(self) -> Mapper:
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=TracingMapper
        )

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        with events.append(self.name, system=SYSTEM) as out:
            recordings = super().save(*objs, **kwargs)
            out.count = len(recordings)
            if len(recordings) == 1:
                out.set_id(recordings[0].notification.id)
            return recordings

    def process_event(self, domain_event: Any, tracking: Any) -> None:
        leader = tracking.application_name
        with events.handle(
            metadata(domain_event),
            f"process {leader}",
            relation=self.trace_relation,
            replay=self.trace_replay,
            stream=leader,
            event_id=tracking.notification_id,
            system=SYSTEM,
            attributes={
                "messaging.consumer.group.name": self.name,
                "eventsourcing.event.type": type(domain_event).__qualname__,
            },
        ):
            super().process_event(domain_event, tracking)
