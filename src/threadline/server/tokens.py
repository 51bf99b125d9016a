"""Bearer tokens as `threadline serve` and its clients take them: the token itself, or the path of
a file holding it. Dependency-free, so anything may import it."""

from __future__ import annotations

import os


class TokenError(ValueError):
    """A token option names an unreadable file or is empty."""


def token_value(raw: str | None, option: str) -> str | None:
    """A token given as itself or as the path of a file holding it (first line, trimmed)."""
    if raw is None or raw == "":
        return None
    if os.path.isfile(raw):
        try:
            with open(raw, encoding="utf-8") as f:
                text = f.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"{option}: cannot read {raw}: {exc}") from None
        if not text:
            raise TokenError(f"{option}: {raw} is empty")
        return text
    return raw.strip() or None
