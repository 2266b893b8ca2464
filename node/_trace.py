"""Traceability views of a node: the fold over its merged events, reference lookups, acks."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import crdt_model as cm

if TYPE_CHECKING:
    pass

_LOGGER = logging.getLogger(__name__)

MAX_MINUTES = 10_000
"""Minutes whose local day and hour are kept (a week's worth)."""

_LABEL_RE = re.compile(r"^L([A-Z]{1,3})(\d{6})(\d{4,})\Z")


class Traceability:
    """The fold and everything answered from it, kept current as events arrive."""

    def __init__(self, node_code: str, timezone: ZoneInfo) -> None:
        self.node_code = node_code
        self.timezone = timezone
        self.fold = cm.Fold()
        self.acked: set[str] = set()
        self.labels: dict[str, str] = {}
        """Label id -> event id of its label.printed."""
        self._label_counters: dict[str, int] = {}
        self._reference_id: str | None = None
        self.activity: dict[str, dict[str, list[int]]] = {}
        """Local day -> zone -> events per local hour (0-23), kept as events arrive."""
        self.loads_by_day: dict[str, set[str]] = {}
        """Local day -> load numbers opened that day."""
        self._minutes: dict[int, tuple[str, int]] = {}
        """Minute since the epoch -> its local day and hour (worked out once a minute)."""

    # -- feeding ----------------------------------------------------------------

    def add_events(self, events: Iterable[dict[str, Any]]) -> list[cm.Record]:
        """Fold a batch of decoded events; the records of the new ones."""
        return self._noted(self.fold.add_many(events))

    def add_encoded(self, blobs: Iterable[bytes | bytearray]) -> list[cm.Record]:
        """Fold a batch of stored events (at start-up a day's document, live a peer's
        change: each value read once as it comes); the records of the new ones."""
        return self._noted(self.fold.add_encoded(blobs))

    def add_event(self, event: dict[str, Any]) -> list[cm.Record]:
        """Fold one decoded event; its record, unless it was known."""
        added = self.fold.add(event)
        rec = self.fold.record(event["id"]) if added else None
        return [] if rec is None else self._noted([rec])

    def add_ack(self, key: str) -> None:
        """An acks map entry: `<event id>` or `<event id>/<node code>`."""
        self.acked.add(key.split("/", 1)[0])

    def _noted(self, records: list[cm.Record]) -> list[cm.Record]:
        for rec in records:
            self._note(rec)
        return records

    def _note(self, rec: cm.Record) -> None:
        """Count an event in its zone's activity; note its load number and label id."""
        day, hour = self._local_hour(int(rec.id[:13]))  # its clock
        hours = self.activity.setdefault(day, {}).setdefault(rec.zone or "office", [0] * 24)
        hours[hour] += 1
        if rec.type in cm.LOADED and rec.load is not None:
            self.loads_by_day.setdefault(day, set()).add(rec.load)
        label_id = rec.get("label_id") if rec.type == "label.printed" else None
        if not isinstance(label_id, str):
            return
        self.labels.setdefault(label_id, rec.id)
        match = _LABEL_RE.match(label_id)
        if match and match.group(1) == self.node_code:
            day = match.group(2)
            self._label_counters[day] = max(self._label_counters.get(day, 0), int(match.group(3)))

    def _local_hour(self, ms: int) -> tuple[str, int]:
        """The local day and hour of a time in ms (an offset changes on a whole minute)."""
        minute = ms // 60_000
        found = self._minutes.get(minute)
        if found is None:
            if len(self._minutes) >= MAX_MINUTES:
                self._minutes.clear()
            local = datetime.fromtimestamp(minute * 60, self.timezone)
            if local.second:  # an offset not of whole minutes (local mean times before 1972)
                local = datetime.fromtimestamp(ms / 1000, self.timezone)
                return local.date().isoformat(), local.hour
            found = self._minutes[minute] = (local.date().isoformat(), local.hour)
        return found

    def set_reference(
        self, manifest: dict[str, Any] | None, build: Callable[[], cm.Reference]
    ) -> None:
        """Use the given reference export for expiry, set types and planning (`build` makes
        it, called only when the export in use changes)."""
        export_id = None if manifest is None else manifest["export_id"]
        if export_id == self._reference_id:
            return
        self.fold.reference = None if manifest is None else build()
        if manifest is not None:
            _LOGGER.info("views use reference export %s", export_id)
        self._reference_id = export_id

    def set_settings(self, settings: dict[str, Any]) -> None:
        """Cluster settings the views read (shelf life by packaging)."""
        self.fold.settings = settings

    # -- questions ----------------------------------------------------------------

    def today(self, now_ms: int) -> str:
        """The hospital's local date."""
        return datetime.fromtimestamp(now_ms / 1000, self.timezone).date().isoformat()

    def next_label_id(self, local_day: date) -> str:
        """A new label id of this node, e.g. LA2611280001."""
        key = local_day.strftime("%y%m%d")
        self._label_counters[key] = self._label_counters.get(key, 0) + 1
        return f"L{self.node_code}{key}{self._label_counters[key]:04d}"

    def canonical(self, submission: dict[str, Any]) -> dict[str, Any]:
        """The submission naming an endoscope by its reference serial when it was scanned
        as model-serial: one endoscope, one history, whatever label was scanned."""
        ref, code = self.fold.reference, submission.get("endoscope")
        if ref is None or not isinstance(code, str):
            return submission
        serial = ref.endoscope_serial(code)
        if serial == code:
            return submission
        try:
            return cm.validate_submission({**submission, "endoscope": serial})
        except cm.EventError:
            return submission  # a serial no event may carry: kept as scanned

    def refusal(self, submission: dict[str, Any], today: str) -> cm.Problem | None:
        """Why the node refuses to record this submission now (None when it may)."""
        kind = submission["type"]
        if kind == "load.released" and submission["decision"] == "released":
            return cm.check_release(self.fold, submission["load"], "released")
        if kind == "label.printed":
            problem = cm.check_label(self.fold, submission["set"], submission["load"])
            if problem is not None:
                return problem
            label_id = submission.get("label_id")
            match = None if label_id is None else _LABEL_RE.match(label_id)
            if label_id in self.labels or (match and match.group(1) != self.node_code):
                # one id, one label: another node's numbering is theirs to give
                return cm.Problem("label_id_taken", label=label_id)
            data = cm.label_data(
                self.fold, None, submission["set"], submission["load"], self.fold.settings
            )
            if (submission["lot"], submission["expires_on"]) != (data["lot"], data["expires_on"]):
                return cm.Problem(
                    "label_mismatch",
                    load=submission["load"],
                    lot=data["lot"],
                    expires_on=data["expires_on"],
                )
        if kind == "set.used":
            return cm.check_use(self.fold, submission["set"], today)
        if kind == "set.stocked":
            return cm.check_stock(self.fold, submission)
        if kind == "anomaly.resolved":
            anomaly = self.fold.anomaly(submission["anomaly"])
            if anomaly is None:
                return cm.Problem("unknown_anomaly", anomaly=submission["anomaly"])
            if anomaly.resolution is not None:  # one decision; void it to change it
                return cm.Problem(
                    "anomaly_already_resolved",
                    anomaly=anomaly.id,
                    day=anomaly.resolution.day,
                    event=anomaly.resolution.event,
                )
        return None

    def warnings(self, submission: dict[str, Any], today: str) -> list[str]:
        """Rules a physical fact breaks: recorded anyway, said to the operator (cm.Problem)."""
        return list(cm.warnings_for(self.fold, submission, today))
