"""The node's index of events: a peer's catch-up merged at once indexes as one at a time."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

import crdt_model as cm
from node._index import EventIndex
from node._trace import Traceability
from tests.crdt_model.fold_helpers import random_history


def _state(index: EventIndex) -> dict[str, Any]:
    return {
        "by_day": index.by_day,
        "by_set": {k: v for k, v in index.by_set.items() if v},
        "loads": index.loads,
        "counters": {k: v for k, v in index._load_counters.items() if v},
        "own_max": index.own_max,
        "count": index.count,
    }


def _day(rec: cm.Record) -> str:
    return cm.events_doc_name(cm.split_event_id(rec.id)[0]).split("/", 1)[1]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 200))
def test_batches_in_any_order_index_as_events_one_at_a_time(seed: int, batch: int) -> None:
    rng = random.Random(seed)
    records = [cm.record_of(e, {}) for e in random_history(rng, n_sets=8, rounds=4)]
    rng.shuffle(records)
    records += records[: len(records) // 5]  # some arrive twice
    one, merged = EventIndex("A"), EventIndex("A")
    for start in range(0, len(records), batch):
        chunk = sorted(records[start : start + batch], key=lambda r: r.id)  # as the fold gives
        by_day: dict[str, list[cm.Record]] = {}
        for rec in chunk:
            by_day.setdefault(_day(rec), []).append(rec)
        for day, recs in by_day.items():
            merged.add_many(day, recs)
            for rec in recs:
                one.add(day, rec)
    assert _state(merged) == _state(one)
    for ids in merged.by_day.values():
        assert ids == sorted(set(ids))
    assert merged.count == len({r.id for r in records})


# the activity chart's local day and hour, worked out once a minute: as each event's own time
# gives them, across offset changes and in zones whose offset is not whole hours
_TRANSITIONS = [
    1_792_890_000_000,  # 2026-10-25 01:00 UTC: Paris goes back from 03:00 CEST to 02:00 CET
    1_774_746_000_000,  # 2026-03-29 01:00 UTC: Paris goes forward from 02:00 CET to 03:00 CEST
    1_775_314_800_000,  # 2026-04-04 15:00 UTC: Lord Howe goes back half an hour
    1_791_041_400_000,  # 2026-10-03 15:30 UTC: Lord Howe goes forward half an hour
    44_582_400_000,  # 1971: Monrovia's offset was -0:44:30, not whole minutes
]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(
        ["Europe/Paris", "Asia/Kathmandu", "Australia/Lord_Howe", "Africa/Monrovia", "UTC"]
    ),
    near=st.sampled_from(_TRANSITIONS),
    offsets=st.lists(st.integers(-3 * 3_600_000, 3 * 3_600_000), min_size=1, max_size=40),
)
def test_the_activity_hour_of_an_event_is_its_own_local_hour(
    zone: str, near: int, offsets: list[int]
) -> None:
    tz = ZoneInfo(zone)
    trace = Traceability("A", tz)
    for offset in offsets:
        ms = near + offset
        local = datetime.fromtimestamp(ms / 1000, tz)
        assert trace._local_hour(ms) == (local.date().isoformat(), local.hour)
