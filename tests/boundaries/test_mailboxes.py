import asyncio
import pickle
import queue
import threading
from multiprocessing import Pipe

import pytest
from opentelemetry import baggage, context, trace

import threadline as tl
from threadline import semconv
from threadline._handoff import Handoff
from threadline.boundaries import mailboxes
from threadline.boundaries.mailboxes import Envelope, Mailbox
from threadline.testing import hex_ids


def current_ids():
    return hex_ids(trace.get_current_span())


@pytest.fixture(autouse=True)
def mailboxes_on():
    mailboxes.instrument(relation="child")
    yield
    mailboxes.instrument(relation="child")


@pytest.mark.parametrize(
    "make", [queue.Queue, queue.LifoQueue, queue.PriorityQueue, queue.SimpleQueue]
)
def test_send_and_process_make_one_trace(traces, make):
    box = Mailbox(make(), "orders")
    with tl.span("checkout") as root:
        box.send((1, "pay"))
    done = threading.Event()

    def consume():
        with box.receive(timeout=5) as item:
            assert item == (1, "pay")
            with tl.span("handle"):
                pass
        done.set()

    threading.Thread(target=consume).start()
    assert done.wait(10)
    t = traces.one()
    t.assert_connected()
    send, process = t.find("send orders"), t.find("process orders")
    assert t.trace_id == hex_ids(root)[0]
    assert (send.kind, send.parent_id) == ("PRODUCER", hex_ids(root)[1])
    assert (process.kind, process.parent_id) == ("CONSUMER", send.span_id)
    assert t.find("handle").parent_id == process.span_id
    assert send.attributes == {
        "messaging.system": "queue",
        "messaging.destination.name": "orders",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == "orders"


def test_consumer_thread_processes_10000_items_from_100_producers(traces):
    q = queue.Queue()
    sent = {}  # item -> the span current while put ran: its send span

    def put(envelope):
        sent[envelope.item] = current_ids()
        q.put(envelope)

    box = Mailbox(put=put, get=q.get, name="work")
    roots = {}
    processed = {}

    def produce(p):
        with tl.span("producer") as root:
            roots[p] = hex_ids(root)
            for n in range(100):
                box.send((p, n))

    def consume():
        for _ in range(10_000):
            with box.receive(timeout=10) as item:
                processed[item] = current_ids()
                assert trace.get_current_span().is_recording()

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(p,)) for p in range(100)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(30)
    consumer.join(60)
    assert len(processed) == 10_000
    spans = {s.span_id: s for s in traces.spans}
    for (p, n), (trace_id, span_id) in processed.items():
        process = spans[span_id]
        send_trace, send_span = sent[(p, n)]
        assert (process.name, process.kind) == ("process work", "CONSUMER")
        assert (process.trace_id, process.parent_id) == (send_trace, send_span)
        assert trace_id == send_trace
        send = spans[send_span]
        assert (send.kind, send.trace_id, send.parent_id) == ("PRODUCER", *roots[p])
    assert len({parent for parent in (spans[s].parent_id for _, s in processed.values())}) == 10_000


def test_untraced_items_come_out_unchanged(traces):
    q = queue.Queue()
    box = Mailbox(q, "mixed")
    payload = {"id": 7}
    q.put(payload)  # an untraced producer
    with tl.span("consumer loop") as loop:
        with box.receive() as item:
            assert item is payload
    process = traces.one().find("process mixed")
    assert (process.kind, process.parent_id) == ("CONSUMER", hex_ids(loop)[1])


def test_priority_order_is_kept_across_traced_and_untraced_items(traces):
    q = queue.PriorityQueue()
    box = Mailbox(q, "jobs")
    with tl.span("enqueue"):
        for prio in (5, 1, 4):
            box.send((prio, f"traced {prio}"))
    for prio in (3, 2, 0):
        q.put((prio, f"plain {prio}"))
    out = []
    while not q.empty():
        with box.receive() as item:
            out.append(item)
    assert [p for p, _ in out] == [0, 1, 2, 3, 4, 5]
    assert [s for _, s in out][:3] == ["plain 0", "traced 1", "plain 2"]


def test_link_on_request_starts_a_linked_trace(traces):
    box = Mailbox(queue.SimpleQueue(), "batch", relation="link")
    with tl.span("producer"):
        box.send("x")
    with box.receive() as item:
        assert item == "x"
    send = traces.find_all("send batch")[0]
    process = traces.find_all("process batch")[0]
    assert process.trace_id != send.trace_id
    assert process.parent_id is None
    assert process.links == [(send.trace_id, send.span_id, {})]


def test_relation_none_starts_clean(traces):
    box = Mailbox(queue.Queue(), "clean")
    with tl.span("producer"):
        box.send("x")
    with mailboxes.open(box._get(), "clean", relation="none") as item:
        assert item == "x"
    send = traces.find_all("send clean")[0]
    process = traces.find_all("process clean")[0]
    assert process.trace_id != send.trace_id
    assert (process.parent_id, process.links) == (None, [])


def test_asyncio_queue(traces):
    async def main():
        box = Mailbox(asyncio.Queue(), "events")

        async def consumer():
            async with box.areceive() as item:
                assert item == "e1"
                return current_ids()

        task = asyncio.create_task(consumer())  # created outside any span: its own context
        with tl.span("request") as root:
            await box.asend("e1")
        return hex_ids(root), await task

    (trace_id, root_id), (proc_trace, proc_span) = asyncio.run(main())
    t = traces.one()
    t.assert_connected()
    send, process = t.find("send events"), t.find("process events")
    assert (t.trace_id, send.parent_id, send.kind) == (trace_id, root_id, "PRODUCER")
    assert (process.span_id, process.parent_id, process.kind) == (
        proc_span,
        send.span_id,
        "CONSUMER",
    )
    assert send.attributes["messaging.system"] == "asyncio"


def test_awaitable_receive_then_process(traces):
    async def main():
        box = Mailbox(asyncio.Queue(), "events")
        with tl.span("request"):
            await box.asend("e")
        delivery = await box.areceive()
        with delivery as item:
            return item

    assert asyncio.run(main()) == "e"
    traces.one().assert_connected()


def test_sync_calls_on_an_asyncio_queue_fail_precisely():
    box = Mailbox(asyncio.Queue(), "events")
    with pytest.raises(TypeError, match="asend"):
        box.send("x")
    with pytest.raises(TypeError, match="areceive"):
        box.receive()


def test_envelope_pickles_as_a_w3c_carrier_through_a_pipe(traces):
    reader, writer = Pipe(duplex=False)
    box = Mailbox(put=writer.send, get=reader.recv, name="pipe", system="multiprocessing")
    with tl.span("producer"):
        box.send({"n": 1})
    with box.receive() as item:
        assert item == {"n": 1}
    t = traces.one()
    t.assert_connected()
    assert t.find("process pipe").parent_id == t.find("send pipe").span_id


def test_an_envelope_pickles_to_what_its_w3c_carrier_says(traces):
    """Across processes an envelope carries the traceparent's numbers, or the W3C carrier itself
    when there is tracestate or baggage; never a context object. Unpickled, its context is the
    one extracting its carrier gives."""
    with tl.span("plain"):
        plain = mailboxes.seal("payload")
    remote = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "tracestate": "k=v"}
    with tl.resume(remote, "with tracestate"):
        stated = mailboxes.seal("payload")
    with tl.span("with baggage"):
        token = context.attach(baggage.set_baggage("tenant", "t 1"))
        try:
            bagged = mailboxes.seal("payload")
        finally:
            context.detach(token)
    for env in (plain, stated, bagged):
        data = pickle.dumps(env)
        assert b"opentelemetry.context" not in data
        back = pickle.loads(data)
        want = Handoff.from_carrier(env.handoff.carrier)
        assert back.item == "payload"
        assert back.handoff.span_context == want.span_context
        assert back.handoff.span_context.is_remote
        assert dict(baggage.get_all(back.handoff.context)) == dict(baggage.get_all(want.context))
        assert back.handoff.carrier == env.handoff.carrier
    assert b"traceparent" not in pickle.dumps(plain)  # three numbers, no header to parse
    assert dict(stated.handoff.span_context.trace_state) == {"k": "v"}
    assert b"tracestate" in pickle.dumps(stated) and b"baggage" in pickle.dumps(bagged)


def test_uninstalled_puts_bare_items_and_still_unwraps(traces):
    q = queue.Queue()
    box = Mailbox(q, "off")
    with tl.span("before"):
        box.send("sealed")
    mailboxes.uninstrument()
    assert not mailboxes.instrumented()
    box.send("bare")
    assert q.queue[-1] == "bare"
    with box.receive() as first, box.receive() as second:
        assert (first, second) == ("sealed", "bare")
    assert [s.name for s in traces.spans] == ["send off", "before"]
    mailboxes.instrument()
    mailboxes.instrument()
    assert mailboxes.instrumented()


def test_bad_arguments_fail_at_the_call_site():
    with pytest.raises(TypeError, match="put= and get="):
        Mailbox(put=print)
    with pytest.raises(ValueError, match="relation"):
        Mailbox(queue.Queue(), relation="sibling")
    with pytest.raises(ValueError, match="name"):
        Mailbox(queue.Queue(), "")
    with pytest.raises(
        TypeError, match=r"Mailbox's queue needs put\(\) and get\(\) methods, which list lacks"
    ):
        Mailbox([], "orders")
    with pytest.raises(TypeError, match=r"Mailbox\(queue, name\): the queue comes first"):
        Mailbox("orders", queue.Queue())
    with pytest.raises(TypeError, match="a queue or put= and get=, not both"):
        Mailbox(queue.Queue(), "orders", put=print)


def test_a_failed_put_is_recorded_and_raised(traces):
    box = Mailbox(queue.Queue(maxsize=1), "full")
    box.send(1)
    with pytest.raises(queue.Full):
        box.send(2, block=False)
    failed = traces.find_all("send full")[1]
    assert failed.status == "ERROR"
    assert isinstance(Envelope(1, tl.capture()) < 2, bool)


def test_a_batch_is_one_process_span_linked_to_every_sender(traces):
    q = queue.Queue()
    box = Mailbox(q, "batch")
    for n in range(3):
        with tl.span(f"request {n}"):
            box.send(n)
    q.put("plain")
    with tl.span("consumer") as consumer:
        with box.receive_batch(10, timeout=0) as items:  # what is there, at once
            assert items == [0, 1, 2, "plain"]
    (process,) = traces.find_all("process batch")
    sends = traces.find_all("send batch")
    assert (process.kind, process.parent_id) == ("CONSUMER", hex_ids(consumer)[1])
    assert process.links == [(s.trace_id, s.span_id, {}) for s in sends]
    assert process.attributes["messaging.batch.message_count"] == 4
    assert "threadline.links.dropped" not in process.attributes


def test_batch_links_are_deduplicated_and_capped(traces):
    with tl.span("one sender"):
        same = [mailboxes.seal(i) for i in range(3)]
    many = []
    for i in range(semconv.MAX_LINKS + 5):
        with tl.span("sender"):
            many.append(mailboxes.seal(i))
    with mailboxes.open_batch(same, "dedupe") as items:
        assert items == [0, 1, 2]
    with mailboxes.open_batch(many, "capped") as items:
        assert len(items) == semconv.MAX_LINKS + 5
    dedupe = traces.find_all("process dedupe")[0]
    capped = traces.find_all("process capped")[0]
    assert len(dedupe.links) == 1
    assert len(capped.links) == semconv.MAX_LINKS
    assert capped.attributes["threadline.links.dropped"] == 5


def test_an_empty_batch_makes_no_span(traces):
    box = Mailbox(queue.Queue(), "idle")
    with box.receive_batch(5, timeout=0.01) as items:
        assert items == []
    assert traces.find_all("process idle") == []
    with pytest.raises(ValueError, match="max_size must be a positive int, not 0"):
        box.receive_batch(0)
    with pytest.raises(ValueError, match="timeout must be None or seconds >= 0, not -1"):
        box.receive_batch(5, timeout=-1)


def test_sealed_outside_any_trace_is_processed_in_the_receivers_context(traces):
    box = Mailbox(queue.Queue(), "orphan")
    box._put(mailboxes.seal("x"))  # sealed with no current span: nothing to continue
    with tl.span("consumer") as consumer:
        with box.receive() as item:
            assert item == "x"
    assert traces.one().find("process orphan").parent_id == hex_ids(consumer)[1]


def test_a_batch_from_a_get_without_timeout_is_refused_naming_it(traces):
    inbox = []
    box = Mailbox(put=inbox.append, get=inbox.pop, name="list")
    box.send(1)
    with pytest.raises(TypeError, match=r"receive_batch needs a get\(block, timeout\).*list\.pop"):
        box.receive_batch(5, timeout=0.01)
    with box.receive() as item:  # receive() still works
        assert item == 1


def test_a_batch_from_a_pipe_in_one_process(traces):
    mine, theirs = Pipe()
    for n in range(3):
        with tl.span(f"request {n}"):
            Mailbox(theirs, "pipe").send(n)
    theirs.close()  # the other end closes after its messages: the batch ends at them
    with Mailbox(mine, "pipe").receive_batch(10, timeout=5) as items:
        assert items == [0, 1, 2]
    (process,) = traces.find_all("process pipe")
    assert len(process.links) == 3
