"""Ingest: OTLP exports in, durable spans out.

Owns the bounded queue and its writer thread (queue.py), the OTLP/HTTP endpoint (otlp_http.py),
the OTLP/gRPC handler (otlp_grpc.py), and the one place that chooses the fast (Arrow) or the
message-by-message decode path (decode.py).

May import: `threadline.server.model`, `threadline.server.otlp`, `threadline.server.storage`
(the Store interface and row layout, never an engine). Never analysis or web.
"""
