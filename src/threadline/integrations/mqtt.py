"""MQTT (paho-mqtt 2.x): the trace travels in MQTT 5 user properties.

    info = mqtt.publish(client, "sensors/1", b"21.5", qos=1)   # PRODUCER "publish sensors/1"
    client.on_message = mqtt.handler(on_message)               # CONSUMER "process sensors/1"
    with mqtt.process(message): ...                            # a message got another way

On an MQTT 5 connection (``Client(..., protocol=MQTTv5)``) ``traceparent`` / ``tracestate`` /
``baggage`` are added to the PUBLISH packet's user properties (as the W3C Trace Context MQTT
draft does), next to any the caller gave, which are kept. MQTT 3.1.1 has no headers: the message
is published exactly as given, still inside a PRODUCER span, and the subscriber processes it in
a trace of its own; the payload is never touched. Messages without the properties (untraced or
3.1.1 publishers) reach the callback unchanged. Needs the ``mqtt`` extra (paho-mqtt >= 2).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from typing import Any

try:
    from paho.mqtt.client import MQTTv5
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "threadline.integrations.mqtt needs paho-mqtt 2: pip install 'threadline[mqtt]'"
    ) from exc

from threadline import semconv
from threadline.integrations import messaging
from threadline.seam import Relation, carrier_keys

__all__ = ["handler", "process", "process_batch", "publish"]

SYSTEM = "mqtt"


def _server(client: Any) -> dict[str, Any]:
    try:
        return {"server.address": client.host, "server.port": client.port} if client.host else {}
    except AttributeError:
        return {}


def _user_properties(properties: Any) -> list[tuple[str, str]]:
    return list(getattr(properties, "UserProperty", None) or [])


def _with_carrier(properties: Any, carrier: dict[str, str]) -> Properties:
    """A copy of the PUBLISH properties whose user properties carry the trace."""
    out = copy.deepcopy(properties) if properties is not None else Properties(PacketTypes.PUBLISH)
    keys = carrier_keys()
    kept = [(k, v) for k, v in _user_properties(properties) if k.lower() not in keys]
    # Assigning UserProperty appends to what is there; the copy's list is replaced instead.
    object.__setattr__(out, "UserProperty", kept + list(carrier.items()))
    return out


def publish(
    client: Any,
    topic: str,
    payload: Any = None,
    qos: int = 0,
    retain: bool = False,
    properties: Any = None,
) -> Any:
    """``client.publish(...)`` inside a PRODUCER "publish <topic>" span; on MQTT 5 the trace is
    added to the user properties (the caller's properties object is not changed). Returns the
    MQTTMessageInfo. ``client`` is the paho-mqtt Client; ``topic``, ``payload``, ``qos``,
    ``retain`` and ``properties`` go to its ``publish`` as they are."""
    if not callable(getattr(client, "publish", None)):
        raise TypeError(f"publish takes a paho-mqtt Client, not {type(client).__name__}")
    v5 = getattr(client, "protocol", None) == MQTTv5
    attrs = {**_server(client), semconv.MQTT_CARRIED: v5}
    with messaging.publish(SYSTEM, topic, operation="publish", attributes=attrs) as out:
        if v5:
            properties = _with_carrier(properties, out.headers)
        return client.publish(topic, payload, qos=qos, retain=retain, properties=properties)


def process(message: Any, *, relation: Relation | None = None):
    """``with process(message):`` — the block in a CONSUMER "process <topic>" span continuing the
    publisher's trace (``relation="link"`` / ``"none"`` on request)."""
    if not hasattr(message, "topic") or not hasattr(message, "properties"):
        raise TypeError(f"process takes a paho MQTTMessage, not {type(message).__name__}")
    return messaging.process(
        _user_properties(message.properties),
        SYSTEM,
        message.topic,
        relation=relation,
    )


def process_batch(messages: Iterable[Any]):
    """One CONSUMER "process <topic>" span for ``messages`` collected together, linked to each
    publisher."""
    messages = list(messages)
    topics = {m.topic for m in messages}
    return messaging.process_batch(
        [_user_properties(m.properties) for m in messages],
        SYSTEM,
        topics.pop() if len(topics) == 1 else "",
    )


def handler(
    fn: Callable[[Any, Any, Any], Any], *, relation: Relation | None = None
) -> Callable[[Any, Any, Any], Any]:
    """An ``on_message`` callback (``client.on_message = handler(fn)``, or
    ``message_callback_add``) with each message processed in its own CONSUMER span. ``fn`` is
    the callback, ``fn(client, userdata, message)``; ``relation`` is as for process()."""
    if not callable(fn):
        raise TypeError(f"handler takes a function, not {type(fn).__name__}")

    @functools.wraps(fn)
    def on_message(client: Any, userdata: Any, message: Any) -> Any:
        with process(message, relation=relation):
            return fn(client, userdata, message)

    return on_message
