"""Retry-After parsing and the backoff policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replicate_tasks.retry import RetryPolicy, parse_retry_after

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Fri, 02 Jan 2026 03:04:35 GMT", 30.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_attempts", 0), ("initial_wait", -1.0), ("max_wait", -1.0), ("max_retry_after", -1.0)],
)
def test_policy_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]
