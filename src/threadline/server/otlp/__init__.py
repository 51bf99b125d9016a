"""OTLP wire formats <-> the server's model, with no storage behind them.

- decoded.py: what every decoder returns (`Decoded`), `OTLPError`, and their shared rules.
- protobuf.py: parsing a protobuf request and reading its attribute, id and link fields.
- columns.py: THE production decoder, message by message: protobuf straight into span table
  rows. arrow.py: its fast path through Arrow (ptars) for large requests. Which one runs is
  chosen in one place, `threadline.server.ingest.decode`.
- reference.py: the reference decoder (protobuf -> `model.Span`), plain and field by field, that
  the tests compare the production decoder with.
- json_format.py: OTLP/JSON -> spans (the JSON receiver, the Python client) and spans -> OTLP/JSON
  (Jaeger api_v3).
- response.py: export responses and error statuses.

May import: `threadline.server.model`, `threadline.semconv`, `threadline.seam`, and the
engine-neutral row layout `threadline.server.storage.layout` (the rows the production decoder
builds). Never a storage engine, ingest, analysis or web.
"""
