"""Budget periods and rate-limit windows: calendar edge cases, and properties over any moment."""

import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.policy.periods import PERIODS, WINDOW_SECONDS, Span, period_window, window_bucket

pytestmark = pytest.mark.unit

UTC = dt.UTC


def at(*when: int) -> int:
    return calendar.timegm((*when, 0, 0, 0)[:6])


moments = st.floats(min_value=at(1970, 1, 1), max_value=at(9998, 12, 31, 23, 59, 59), allow_nan=False)
int_moments = st.integers(min_value=at(1970, 1, 1), max_value=at(9998, 12, 31, 23, 59, 59))


def reference(period: str, now: float) -> tuple[int, int]:
    """The same windows, derived independently with datetime arithmetic."""
    d = dt.datetime.fromtimestamp(now, UTC)
    if period == "minute":
        start = d.replace(second=0, microsecond=0)
        return int(start.timestamp()), int((start + dt.timedelta(minutes=1)).timestamp())
    if period == "hour":
        start = d.replace(minute=0, second=0, microsecond=0)
        return int(start.timestamp()), int((start + dt.timedelta(hours=1)).timestamp())
    day = d.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return int(day.timestamp()), int((day + dt.timedelta(days=1)).timestamp())
    if period == "week":
        start = day - dt.timedelta(days=d.weekday())
        return int(start.timestamp()), int((start + dt.timedelta(days=7)).timestamp())
    start = day.replace(day=1)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return int(start.timestamp()), int(end.timestamp())


@pytest.mark.parametrize(
    ("period", "now", "start", "end", "label"),
    [
        ("minute", at(2026, 3, 18, 12, 30, 15), at(2026, 3, 18, 12, 30), at(2026, 3, 18, 12, 31), "2026-03-18T1230"),
        ("minute", at(2026, 12, 31, 23, 59, 59), at(2026, 12, 31, 23, 59), at(2027, 1, 1), "2026-12-31T2359"),
        ("hour", at(2026, 3, 18, 12, 59, 59), at(2026, 3, 18, 12), at(2026, 3, 18, 13), "2026-03-18T12"),
        ("hour", at(2026, 3, 18, 23, 0, 0), at(2026, 3, 18, 23), at(2026, 3, 19), "2026-03-18T23"),
        ("day", at(2026, 3, 18, 0, 0, 0), at(2026, 3, 18), at(2026, 3, 19), "2026-03-18"),
        ("day", at(2024, 2, 28, 12), at(2024, 2, 28), at(2024, 2, 29), "2024-02-28"),
        ("day", at(2024, 2, 29, 23, 59, 59), at(2024, 2, 29), at(2024, 3, 1), "2024-02-29"),
        ("day", at(2026, 12, 31, 23, 59, 59), at(2026, 12, 31), at(2027, 1, 1), "2026-12-31"),
        # weeks start on Monday 00:00 UTC and are labelled with the ISO week (and ISO week-year)
        ("week", at(2026, 3, 18, 12), at(2026, 3, 16), at(2026, 3, 23), "2026-W12"),  # Wednesday
        ("week", at(2026, 3, 16), at(2026, 3, 16), at(2026, 3, 23), "2026-W12"),  # Monday 00:00
        ("week", at(2026, 3, 22, 23, 59, 59), at(2026, 3, 16), at(2026, 3, 23), "2026-W12"),  # Sunday night
        ("week", at(1970, 1, 1), at(1969, 12, 29), at(1970, 1, 5), "1970-W01"),  # the epoch was a Thursday
        ("week", at(2021, 1, 3), at(2020, 12, 28), at(2021, 1, 4), "2020-W53"),  # a 53-week year
        ("week", at(2025, 12, 31), at(2025, 12, 29), at(2026, 1, 5), "2026-W01"),  # week-year ahead of year
        ("week", at(2027, 1, 1), at(2026, 12, 28), at(2027, 1, 4), "2026-W53"),  # week-year behind year
        ("month", at(2026, 3, 18), at(2026, 3, 1), at(2026, 4, 1), "2026-03"),
        ("month", at(2025, 12, 31, 23, 59, 59), at(2025, 12, 1), at(2026, 1, 1), "2025-12"),  # Dec -> Jan
        ("month", at(2026, 1, 1), at(2026, 1, 1), at(2026, 2, 1), "2026-01"),
        ("month", at(2024, 2, 29, 23, 59, 59), at(2024, 2, 1), at(2024, 3, 1), "2024-02"),  # leap year
        ("month", at(2026, 2, 15), at(2026, 2, 1), at(2026, 3, 1), "2026-02"),  # 28 days
        ("month", at(2000, 2, 29), at(2000, 2, 1), at(2000, 3, 1), "2000-02"),  # divisible by 400: leap
        ("month", at(2100, 2, 28, 23, 59, 59), at(2100, 2, 1), at(2100, 3, 1), "2100-02"),  # by 100: not leap
        ("month", at(2026, 4, 30, 23, 59, 59), at(2026, 4, 1), at(2026, 5, 1), "2026-04"),  # 30 days
    ],
)
def test_calendar_edges(period, now, start, end, label):
    assert period_window(period, now) == Span(start, end, label)


@pytest.mark.parametrize(("year", "days"), [(2024, 29), (2025, 28), (2000, 29), (2100, 28)])
def test_leap_february_is_29_days_and_common_february_28(year, days):
    span = period_window("month", at(year, 2, 10))
    assert span.end - span.start == days * 86400


def test_fractional_moments_belong_to_the_window_they_are_in():
    assert period_window("day", at(2026, 3, 19) - 0.001).label == "2026-03-18"
    assert period_window("day", at(2026, 3, 19) + 0.001).label == "2026-03-19"
    assert period_window("month", at(2026, 4, 1) - 1e-6).label == "2026-03"
    assert window_bucket("second", 1000.999) == Span(1000, 1001, "1000")


def test_labels_never_contain_a_colon():
    for period in PERIODS:
        assert ":" not in period_window(period, at(2026, 3, 18, 12, 30, 15)).label


@pytest.mark.parametrize("bad", ["year", "second", "", "Month"])
def test_unknown_period_is_an_error(bad):
    with pytest.raises(ValueError, match="unknown budget period"):
        period_window(bad, 0)


@pytest.mark.parametrize("bad", ["week", "month", "ms"])
def test_unknown_window_is_an_error(bad):
    with pytest.raises(ValueError, match="unknown rate-limit window"):
        window_bucket(bad, 0)


@pytest.mark.parametrize(
    ("window", "now", "start", "end"),
    [
        ("second", at(2026, 3, 18, 12, 30, 15), at(2026, 3, 18, 12, 30, 15), at(2026, 3, 18, 12, 30, 16)),
        ("minute", at(2026, 3, 18, 12, 30, 15), at(2026, 3, 18, 12, 30), at(2026, 3, 18, 12, 31)),
        ("hour", at(2026, 3, 18, 12, 30, 15), at(2026, 3, 18, 12), at(2026, 3, 18, 13)),
        ("day", at(2026, 3, 18, 23, 59, 59), at(2026, 3, 18), at(2026, 3, 19)),
    ],
)
def test_rate_windows_are_calendar_aligned(window, now, start, end):
    assert window_bucket(window, now) == Span(start, end, str(start // WINDOW_SECONDS[window]))


@given(period=st.sampled_from(PERIODS), now=moments)
def test_period_contains_now_and_matches_an_independent_calendar(period, now):
    span = period_window(period, now)
    assert span.start <= now < span.end
    assert (span.start, span.end) == reference(period, now)


@given(period=st.sampled_from(PERIODS), now=int_moments)
def test_periods_tile_time_without_gaps_or_overlaps(period, now):
    span = period_window(period, now)
    assert period_window(period, span.start) == span
    assert period_window(period, span.end - 1) == span
    after, before = period_window(period, span.end), period_window(period, span.start - 1)
    assert after.start == span.end and before.end == span.start
    assert len({before.label, span.label, after.label}) == 3
    assert before.label < span.label < after.label  # labels sort in time order


@given(now=int_moments)
def test_period_starts_fall_on_calendar_boundaries(now):
    week = dt.datetime.fromtimestamp(period_window("week", now).start, UTC)
    assert (week.weekday(), week.hour, week.minute, week.second) == (0, 0, 0, 0)
    month = dt.datetime.fromtimestamp(period_window("month", now).start, UTC)
    assert (month.day, month.hour, month.minute, month.second) == (1, 0, 0, 0)
    span = period_window("month", now)
    assert (span.end - span.start) // 86400 in (28, 29, 30, 31)


@given(window=st.sampled_from(list(WINDOW_SECONDS)), now=moments)
def test_rate_window_properties(window, now):
    length = WINDOW_SECONDS[window]
    span = window_bucket(window, now)
    assert span.start <= now < span.end and span.end - span.start == length and span.start % length == 0
    assert window_bucket(window, span.end).label == str(int(span.label) + 1)
