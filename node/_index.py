"""In-memory index of the merged events: by day, by set, by load number."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterator

from crdt_model import (
    LOADED,
    SET_EVENTS,
    ZERO,
    Record,
    events_doc_name,
    split_event_id,
)

_LOAD_RE = re.compile(r"^([A-Z]{1,3})-(\d{6})-(\d{3,})\Z")
_MERGE_FROM = 64
"""Batches of this many events and more are merged into a day's ids at once."""


def _insert(ids: list[str], event_id: str) -> None:
    if not ids or ids[-1] < event_id:
        ids.append(event_id)  # the common case: events arrive in clock order
    else:
        pos = bisect.bisect_left(ids, event_id)
        if pos == len(ids) or ids[pos] != event_id:
            ids.insert(pos, event_id)


class EventIndex:
    """Sorted event ids per day and per set; load numbers; the node's own clock high-water."""

    def __init__(self, node_code: str) -> None:
        self.node_code = node_code
        self.by_day: dict[str, list[str]] = {}
        self.by_set: dict[str, list[str]] = defaultdict(list)
        self.loads: dict[str, str] = {}
        self.own_max = ZERO
        self.count = 0
        self._load_counters: dict[str, int] = defaultdict(int)
        self._reserved: set[str] = set()
        """Load numbers of local events on their way to the disk (not indexed yet)."""
        self.fed: dict[str, set[str]] = {}
        """Per reader (a token's digest, or a person), the events handed out to it in a feed
        page (written to its connection whole) since the node started and not acknowledged
        yet: what its `up_to` may acknowledge (an event merged in later with an older id was
        never read by it)."""

    def add(self, day: str, rec: Record) -> None:
        """Index one event of the given UTC day (the fold's record of it)."""
        ids = self.by_day.setdefault(day, [])
        before = len(ids)
        _insert(ids, rec.id)
        if len(ids) != before:
            self._note(rec)

    def add_many(self, day: str, recs: list[Record]) -> None:
        """Index events of the given UTC day, as `add` each: a peer's catch-up, whose ids
        fall among those held, is merged in at once (an insert each moves the day's list)."""
        ids = self.by_day.get(day)
        if len(recs) < _MERGE_FROM or not ids:
            for rec in recs:  # (a day with no event gets no entry, as with `add`)
                self.add(day, rec)
            return
        fresh: dict[str, Record] = {}
        size = len(ids)
        for rec in recs:  # a search each: the day may hold many more than the batch
            pos = bisect.bisect_left(ids, rec.id)
            if pos == size or ids[pos] != rec.id:
                fresh.setdefault(rec.id, rec)
        ids.extend(fresh)
        ids.sort()  # sorted runs (the fold gives its records in id order): merged
        for rec in fresh.values():
            self._note(rec)

    def _note(self, rec: Record) -> None:
        """What an event newly indexed by day adds: the count, its sets, its load number,
        this node's clock high-water."""
        event_id = rec.id
        self.count += 1
        sets = rec.sets or ((rec.key,) if rec.type in SET_EVENTS and rec.key is not None else ())
        for set_code in sets:
            _insert(self.by_set[set_code], event_id)
        if rec.type in LOADED and rec.load is not None:
            self.loads.setdefault(rec.load, event_id)
            match = _LOAD_RE.match(rec.load)
            if match and match.group(1) == self.node_code:
                day_key = match.group(2)
                self._load_counters[day_key] = max(
                    self._load_counters[day_key], int(match.group(3))
                )
        if rec.node == self.node_code:
            self.own_max = max(self.own_max, split_event_id(event_id)[0])

    def next_load_number(self, yymmdd: str) -> str:
        """The next free load number of this node for a local day, e.g. A-261128-004."""
        while True:
            self._load_counters[yymmdd] += 1
            number = f"{self.node_code}-{yymmdd}-{self._load_counters[yymmdd]:03d}"
            if not self.load_taken(number):
                return number

    def load_taken(self, number: str) -> bool:
        """True when a load number is held, or reserved by a write in flight."""
        return number in self.loads or number in self._reserved

    def load_owner(self, number: str) -> str | None:
        """The node code whose numbering `number` follows (None: a number of another form)."""
        match = _LOAD_RE.match(number)
        return None if match is None else match.group(1)

    def reserve_load(self, number: str) -> None:
        """Hold a load number for a local event until it is indexed or given up."""
        self._reserved.add(number)

    def release_load(self, number: str) -> None:
        """The write of a reserved load number is over (indexed now, or failed)."""
        self._reserved.discard(number)

    def latest(self) -> str | None:
        """The greatest event id held (any node's)."""
        days = [day for day, ids in self.by_day.items() if ids]
        return self.by_day[max(days)][-1] if days else None

    def days(self) -> list[str]:
        """Days holding events, oldest first."""
        return sorted(self.by_day)

    def ids(self, *, day: str | None = None, set_code: str | None = None) -> Iterator[str]:
        """Event ids in (hlc, id) order, narrowed to a day and/or a set."""
        if set_code is not None:
            ids = self.by_set.get(set_code, [])
            if day is None:
                yield from ids
            else:
                yield from (i for i in ids if self.day_of(i) == day)
            return
        for d in [day] if day is not None else self.days():
            yield from self.by_day.get(d, [])

    def ids_after(
        self, after: str | None, *, day: str | None = None, set_code: str | None = None
    ) -> Iterator[str]:
        """Like ids(), starting just past `after`."""
        if after is None:
            yield from self.ids(day=day, set_code=set_code)
            return
        if set_code is not None:
            ids = self.by_set.get(set_code, [])
            start = bisect.bisect_right(ids, after)
            for event_id in ids[start:]:
                if day is None or self.day_of(event_id) == day:
                    yield event_id
            return
        for d in [day] if day is not None else self.days():
            ids = self.by_day.get(d, [])
            yield from ids[bisect.bisect_right(ids, after) :]

    def day_of(self, event_id: str) -> str:
        """The UTC day (document) of an indexed event id."""
        return events_doc_name(split_event_id(event_id)[0]).split("/", 1)[1]
