"""The OTLP/HTTP span exporter threadline configures: the SDK's, encoding with threadline's own
encoder (_otlp_encoder.py). Request, retries, size limit and self-metrics stay the SDK's; an SDK
without those parts keeps its own export whole."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from threadline._otlp_encoder import encode_spans

log = logging.getLogger("threadline")


class OTLPExporter(OTLPSpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        metrics = getattr(self, "_metrics", None)
        if self._shutdown or client is None or metrics is None:
            return super().export(spans)
        with metrics.export_operation(len(spans)) as result:
            try:
                data = encode_spans(spans)
            except Exception as error:  # noqa: BLE001 - counted as the SDK counts its own
                log.error("threadline: could not encode a span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            limit = getattr(self, "_max_request_size", 0) or 0
            if 0 < limit < len(data):
                return super().export(spans)  # the SDK drops it, and logs and counts why
            outcome = client.export(data)
            if not outcome.success:
                result.error = outcome.error
                status = getattr(outcome, "status_code", None)
                if status is not None:
                    result.error_attrs = {"http.response.status_code": status}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
