"""The OpenTelemetry runtime context, read and set directly.

The API's get_current / attach / detach each go two Python calls deep to reach one ContextVar
(its default ContextVarsRuntimeContext). The hottest paths, every span and every in-process hop,
use the variable itself: the same context, the same tokens, a fraction of the calls. Another
runtime context (chosen through OTEL_PYTHON_CONTEXT) keeps the API's functions.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context as _api
from opentelemetry.context.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

__all__ = ["attach", "current", "detach", "reset"]

_runtime = _api._RUNTIME_CONTEXT  # noqa: SLF001 - the API's own runtime context

if type(_runtime) is ContextVarsRuntimeContext:
    _var = _runtime._current_context  # noqa: SLF001
    current = _var.get
    attach = _var.set
    reset = _var.reset  # raises where detach logs: for a token set in the same frame

    def detach(token: Token[Context]) -> None:
        """Restore what was current before attach(); a token from another context is logged,
        as the API's detach does, not raised."""
        try:
            reset(token)
        except Exception:  # noqa: BLE001
            _api.detach(token)

else:  # pragma: no cover - a runtime context of the user's choosing
    current = _api.get_current
    attach = _api.attach
    reset = detach = _api.detach
