from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt_model import (
    MAX_LOGICAL,
    ClockError,
    HybridClock,
    Timestamp,
    is_doc_name,
    make_event_id,
    split_event_id,
)

wall = st.integers(min_value=0, max_value=10**13 - 1)


@given(st.lists(wall, min_size=1, max_size=300))
def test_timestamps_strictly_increase_under_any_wall_clock(walls: list[int]) -> None:
    clock = HybridClock()
    issued = [clock.now(w) for w in walls]
    assert all(a < b for a, b in zip(issued, issued[1:], strict=False))
    # text form sorts like the timestamps themselves
    assert sorted(str(t) for t in issued) == [str(t) for t in issued]


@given(st.lists(wall, min_size=1, max_size=200))
def test_clock_follows_the_wall_and_drifts_only_by_backward_jumps(walls: list[int]) -> None:
    clock = HybridClock()
    high = 0
    for w in walls:
        ts = clock.now(w)
        high = max(high, w)
        assert ts.physical >= w
        # never ahead of the greatest wall time seen (logical overflow needs 100k events)
        assert ts.physical <= high


def test_backward_jump_only_counts_logically() -> None:
    clock = HybridClock()
    first = clock.now(1_000_000)
    after_jump = clock.now(400_000)
    assert after_jump == Timestamp(1_000_000, first.logical + 1)
    assert clock.now(2_000_000) == Timestamp(2_000_000, 0)


def test_logical_overflow_borrows_next_millisecond() -> None:
    clock = HybridClock(Timestamp(5_000, MAX_LOGICAL))
    assert clock.now(1_000) == Timestamp(5_001, 0)


def test_remote_timestamp_within_drift_is_adopted() -> None:
    clock = HybridClock(max_drift_ms=1000)
    assert clock.observe(Timestamp(10_500, 3), wall_ms=10_000)
    assert clock.now(10_000) == Timestamp(10_500, 4)


def test_remote_timestamp_too_far_ahead_is_not_adopted() -> None:
    clock = HybridClock(max_drift_ms=1000)
    assert not clock.observe(Timestamp(99_999_999, 0), wall_ms=10_000)
    assert clock.now(10_000) == Timestamp(10_000, 0)


@given(st.lists(st.tuples(wall, st.sampled_from(["A", "B", "C", "AB"])), min_size=1, max_size=200))
def test_event_ids_unique_across_nodes_and_sorted_by_clock(steps: list[tuple[int, str]]) -> None:
    clocks: dict[str, HybridClock] = {}
    ids = []
    for w, node in steps:
        ts = clocks.setdefault(node, HybridClock()).now(w)
        ids.append((ts, make_event_id(ts, node)))
    assert len({i for _, i in ids}) == len(ids)
    by_id = sorted(ids, key=lambda pair: pair[1])
    assert [ts for ts, _ in by_id] == sorted(ts for ts, _ in ids)
    for ts, event_id in ids:
        assert split_event_id(event_id)[0] == ts


@pytest.mark.parametrize(
    "text", ["", "123", "1795869091234-0000", "1795869091234-00000x", "x" * 50]
)
def test_bad_timestamp_text_is_refused(text: str) -> None:
    with pytest.raises(ClockError):
        Timestamp.parse(text)


def test_clocks_and_ids_are_written_in_ascii_digits_only() -> None:
    """Other digits (Arabic-Indic, full-width) would be read as numbers yet sort after every
    real clock: a peer could put its events after everyone's."""
    arabic = "١٧٩٥٨٥١٢٠٠٠٠٠-٠٠٠٠١"
    with pytest.raises(ClockError):
        Timestamp.parse(arabic)
    with pytest.raises(ClockError):
        split_event_id(arabic + "-A")
    assert not is_doc_name("events/２０２６-11-28")
