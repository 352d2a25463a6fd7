"""One reading of times for the event log, the prediction log and the retraining window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mlsd.timestamps import epoch, utc


def test_naive_times_are_utc_and_offsets_are_converted():
    assert utc("2026-05-01T12:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert utc("2026-05-01T14:00+02:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    local = datetime(2026, 5, 1, 7, tzinfo=timezone(timedelta(hours=-5)))
    assert utc(local).tzinfo is UTC and utc(local).hour == 12
    assert utc(date(2026, 5, 1)) == datetime(2026, 5, 1, tzinfo=UTC)


def test_epoch_takes_numbers_as_they_are_and_refuses_what_is_not_a_time():
    assert epoch(1_700_000_000) == 1_700_000_000.0 and epoch(1.5) == 1.5
    assert epoch("1970-01-01T00:01:00Z") == 60.0
    for bad in ("yesterday", True, "2026-13-01"):
        with pytest.raises(ValueError):
            epoch(bad)
