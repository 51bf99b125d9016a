"""receive_batch with Broadway's semantics: a batch is handed over when it holds max_size
messages, or `timeout` after its first message; and a multiprocessing Queue's batch is not split
because the sender's feeder thread had not written it all yet."""

from __future__ import annotations

import multiprocessing
import queue

import threadline as tl
from threadline import semconv
from threadline.boundaries.mailboxes import Mailbox

WAIT = 60


def test_a_full_batch_is_handed_over_and_the_rest_waits_for_the_next(traces):
    box = Mailbox(queue.Queue(), "orders")
    with tl.span("producer"):
        for n in range(7):
            box.send(n)
    batches = []
    for _ in range(2):
        with box.receive_batch(max_size=3, timeout=WAIT) as items:  # full: handed over at once
            batches.append(items)
    with box.receive_batch(max_size=3, timeout=0) as items:  # the rest
        batches.append(items)
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    spans = traces.find_all("process orders")
    assert [s.attributes["messaging.batch.message_count"] for s in spans] == [3, 3, 1]
    assert [len(s.links) for s in spans] == [3, 3, 1]


def test_timeout_counts_from_the_first_message_and_then_takes_what_is_waiting(traces):
    q: queue.Queue = queue.Queue()
    asked: list[tuple[bool, float | None]] = []

    def get(block=True, timeout=None):  # the queue's own get, noting how it was asked
        asked.append((block, timeout))
        return q.get(block, timeout)

    box = Mailbox(put=q.put, get=get, name="events")
    box.send("first")
    with box.receive_batch(max_size=10, timeout=0.2, wait=None) as items:
        assert items == ["first"]
    assert asked[0] == (True, None)  # wait=None: for ever for the first message
    # then for the batch to fill: the time left of the 0.2 s since the first message arrived,
    # and once that is gone, whatever is already waiting (block=False)
    ((block, left),) = asked[1:]  # nothing more came: one wait, for the time left, then Empty
    assert block is True and left is not None and 0 < left <= 0.2
    asked.clear()

    for n in range(3):
        box.send(n)
    with box.receive_batch(max_size=10, timeout=0) as items:  # timeout 0: what is there
        assert items == [0, 1, 2]
    assert asked == [(False, None)] * 4  # three messages, then Empty


def test_an_empty_wait_makes_no_batch_and_wait_defaults_to_timeout(traces):
    q: queue.Queue = queue.Queue()
    asked: list[tuple[bool, float | None]] = []

    def get(block=True, timeout=None):
        asked.append((block, timeout))
        return q.get(block, timeout)

    box = Mailbox(put=q.put, get=get, name="idle")
    with box.receive_batch(max_size=5, timeout=0.05) as items:
        assert items == []
    assert asked == [(True, 0.05)]
    assert traces.find_all("process idle") == []


def test_a_multiprocessing_queue_batch_is_not_split_by_the_feeder_thread(traces):
    # put() hands each message to a feeder thread that writes it to the pipe later: a batch
    # taken as "the first, then what is there" came out in pieces. Waiting for the batch to
    # fill (or for the timeout) takes the 300 messages sent together as one batch.
    q = multiprocessing.get_context("spawn").Queue()
    box = Mailbox(q, "ledger")
    payload = "x" * 4096
    q.cancel_join_thread()  # should the test fail, exit does not wait on unread messages
    with tl.span("post entries"):
        for n in range(300):
            box.send((n, payload))
    with box.receive_batch(max_size=300, timeout=WAIT) as items:
        assert [n for n, _ in items] == list(range(300))
    (batch,) = traces.find_all("process ledger")
    assert batch.attributes["messaging.batch.message_count"] == 300
    assert len(batch.links) == semconv.MAX_LINKS
    assert batch.attributes[semconv.LINKS_DROPPED] == 300 - semconv.MAX_LINKS
