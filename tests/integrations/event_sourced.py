"""The eventsourcing applications the event tests run on both sides of a process boundary: a
command-side DogSchool and a Counters process application that counts tricks. One module for
both processes, so the stored topics ("event_sourced:Dog.TrickAdded") resolve in each."""

from __future__ import annotations

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import ProcessApplication

import threadline as tl
from threadline.integrations.eventsourcing import Traced


def postgres_env(schema: str) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "test",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "",
        "POSTGRES_SCHEMA": schema,
    }


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Traced, Application):
    def register(self, name: str):
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_tricks(self, dog_id, *tricks: str) -> None:
        dog = self.repository.get(dog_id)
        for trick in tricks:
            dog.add_trick(trick)
        self.save(dog)


class Counter(Aggregate):
    def __init__(self, trick: str) -> None:
        self.trick = trick
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Counters(Traced, ProcessApplication):
    @singledispatchmethod
    def policy(self, domain_event, processing_event):
        """Registrations are not counted."""

    @policy.register
    def _(self, domain_event: Dog.TrickAdded, processing_event):
        with tl.span("count trick", attributes={"trick": domain_event.trick}):
            counter = Counter(domain_event.trick)
            counter.increment()
            processing_event.collect_events(counter)


class CountersRebuilt(Counters):
    """The same projection built again from the first event: a replay."""

    trace_replay = True
