"""The OTLP/HTTP span exporter threadline configures: the SDK's, encoding with threadline's own
encoder (_otlp_encoder.py) and, for a plain http:// endpoint, sending over a kept-alive
http.client connection (_otlp_http.py). Request, retries, size limit and self-metrics stay the
SDK's; an SDK without those parts keeps its own export whole."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from threadline import _otlp_http
from threadline._otlp_encoder import encode_spans

log = logging.getLogger("threadline")


class RequestTooLarge(ValueError):
    """An encoded batch over the exporter's max_request_size: not sent."""


class OTLPExporter(OTLPSpanExporter):
    def __init__(self, endpoint: str, timeout: float | None = None) -> None:
        if _otlp_http.suits(endpoint):
            transport = _otlp_http.Transport(endpoint, 10.0 if timeout is None else timeout)
            super().__init__(endpoint=endpoint, timeout=timeout, _transport=transport)
        else:
            super().__init__(endpoint=endpoint, timeout=timeout)

    def sends_encoded(self) -> bool:
        """Whether send() can take batches encoded ahead (this SDK has the parts it uses)."""
        return getattr(self, "_client", None) is not None and hasattr(self, "_metrics")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown or not self.sends_encoded():
            return super().export(spans)
        try:
            data = encode_spans(spans)
        except Exception as error:  # noqa: BLE001 - counted as the SDK counts its own
            log.error("threadline: could not encode a span batch: %s", error)
            with self._metrics.export_operation(len(spans)) as result:
                result.error = error
            return SpanExportResult.FAILURE
        limit = getattr(self, "_max_request_size", 0) or 0
        if 0 < limit < len(data):
            return super().export(spans)  # the SDK drops it, and logs and counts why
        return self.send(data, len(spans))

    def send(self, data: bytes, count: int) -> SpanExportResult:
        """Send an encoded ExportTraceServiceRequest of `count` spans (sends_encoded() is true).
        Raises RequestTooLarge, not sending, for data over max_request_size."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        limit = getattr(self, "_max_request_size", 0) or 0
        if 0 < limit < len(data):
            error = RequestTooLarge(
                f"{count} spans encode to {len(data)} bytes, over max_request_size {limit}"
            )
            with self._metrics.export_operation(count) as result:
                result.error = error
            raise error
        with self._metrics.export_operation(count) as result:
            outcome = self._client.export(data)
            if not outcome.success:
                result.error = outcome.error
                status = getattr(outcome, "status_code", None)
                if status is not None:
                    result.error_attrs = {"http.response.status_code": status}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
