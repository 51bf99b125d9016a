"""What extensions of the core (the server, the testing plugin, integrations) may use from it."""

from threadline._otlp_values import any_value

__all__ = ["any_value"]
