"""Workers for the long-lived worker tests (importable by spawn children)."""

from __future__ import annotations

import threadline as tl
from threadline.boundaries import processes
from threadline.boundaries.mailboxes import Mailbox


def actor(inbox, outbox) -> None:
    """An actor loop for the life of its process: one reply per message, until None."""
    requests, replies = Mailbox(inbox, "requests"), Mailbox(outbox, "replies")
    while True:
        with requests.receive(timeout=60) as message:
            if message is None:
                return
            with tl.span("handle", attributes={"message": message}):
                replies.send(message.upper())
        tl.flush()  # the test reads each message's spans while the actor lives on


def renamed(service: str) -> None:
    processes.rename(service)
    with tl.span("stock count"):
        pass


def counter_actor(requests, replies) -> None:
    """A counter actor for the life of its process: ("add", n) -> the new total; ("fail",) raises."""
    from threadline.boundaries.actors import serve

    total = 0

    def handle(message):
        nonlocal total
        if message[0] == "add":
            with tl.span("add", attributes={"n": message[1]}):
                total += message[1]
            return total
        if message[0] == "fail":
            raise ValueError("no such account")
        return None

    serve(requests, replies, handle, name="counter")
