"""The query side over HTTP: the Starlette app, its routes and the web UI.

- app.py: `build_app` (every route of the query port) and `otlp_app` (the OTLP/HTTP port).
- responses.py: the shared responses and errors (one `BadRequest`, one error response).
- params.py: request parameters shared by the routes (trace ids, span kinds, integers).
- jaeger.py: Jaeger's query API (v1 and api_v3). search.py: threadline's own search, trace,
  stats and live feed. analysis.py: the analysis endpoints. waterfall.py: the UI's compact trace.
- access.py: who may talk to the server (tokens, the UI's login cookie, the Host check) and the
  headers every answer carries, as one ASGI middleware in front of both apps.
- ui.py and static/: the web UI.

May import: everything below it in the server (model, otlp, storage, ingest, analysis,
durations). Nothing in the server imports web/ except serving.py, which runs it.
"""
