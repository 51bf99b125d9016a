"""The one place that chooses how an export is decoded into span table rows.

OTLP protobuf (HTTP and gRPC alike) takes the production decoder: its Arrow path (otlp/arrow.py)
for requests large enough to repay it when ptars is installed, else the message-by-message path
(otlp/columns.py), which also names exactly what is wrong with a malformed request. OTLP/JSON is
decoded to spans (otlp/json_format.py) and laid out as rows.
"""

from __future__ import annotations

from threadline.server.otlp.columns import columns_from_request
from threadline.server.otlp.decoded import Decoded
from threadline.server.otlp.json_format import decode_json
from threadline.server.otlp.protobuf import parse_protobuf
from threadline.server.storage.layout import SpanColumns

# below this a ptars call's fixed cost (~0.6 ms, and ~3 ms of kernel calls) outweighs its speed
ARROW_MIN_BYTES = 64 * 1024


def decode_protobuf_export(body: bytes) -> Decoded:
    """An OTLP protobuf export as rows (`Decoded.columns`): through Arrow when the request suits
    it, message by message otherwise. Raises OTLPError for a malformed request."""
    if len(body) >= ARROW_MIN_BYTES:
        # Imported by the first large request, not at start: with pyarrow.compute and the pandas
        # pyarrow loads for its first Python values, a good part of `threadline serve`'s start.
        from threadline.server.otlp import arrow

        decoded = arrow.decode(body) if arrow.available() else None
        if decoded is not None:
            return decoded
    return columns_from_request(parse_protobuf(body))


def decode_json_export(body: bytes) -> Decoded:
    """An OTLP/JSON export as rows (`Decoded.columns`). Raises OTLPError for a malformed one."""
    decoded = decode_json(body)
    decoded.columns = SpanColumns().add_spans(decoded.spans)
    return decoded
