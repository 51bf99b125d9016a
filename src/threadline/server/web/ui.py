"""The web UI: static files shipped inside the package (plain JS/CSS/SVG, no build step, nothing
to install at run time). Mount `routes()` last: it answers `/` and every asset below it.

Every response carries a Content-Security-Policy without 'unsafe-inline' or 'unsafe-eval': span
data is rendered as text by the UI, and the browser refuses inline script and eval besides."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class _UIFiles(StaticFiles):
    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def routes() -> list[Mount]:
    return [Mount("/", _UIFiles(directory=STATIC, html=True), name="ui")]
