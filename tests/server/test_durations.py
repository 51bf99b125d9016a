"""The one duration parser: Go's syntax, plus days where the caller allows them."""

import pytest

from threadline.server.durations import parse_duration

S = 10**9


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("250ms", 250 * 10**6),
        ("1.5s", 3 * S // 2),
        ("1h30m", 5400 * S),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("7ns", 7),
        (" 2m ", 120 * S),
    ],
)
def test_go_durations(text, ns):
    assert parse_duration(text) == ns
    assert parse_duration(text, days=True) == ns


def test_days_only_where_the_caller_allows_them():
    assert parse_duration("2d", days=True) == 2 * 86400 * S
    assert parse_duration("1d12h", days=True) == 36 * 3600 * S
    with pytest.raises(ValueError, match=r"invalid duration '2d': use Go syntax such as 250ms"):
        parse_duration("2d")


@pytest.mark.parametrize("text", ["soon", "10", "5 m", "ms", "1h-30m"])
def test_anything_else_is_refused_naming_the_syntax(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
