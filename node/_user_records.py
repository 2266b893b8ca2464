"""People's records in the cluster document, merged field by field.

A person is the entry `users[login]` (role, password and who set them: written whole by an
administrator) and, beside it, one entry per field that changes on its own:
`users["<login>/disabled"]`, `"<login>/lang"`, `"<login>/badge"`, `"<login>/pin"` (each
`{"v": value or None, "at", "by"}`), and `"<login>/sessions/<node code>"` (`{"v": n}`: the
logouts counted by that node). A login holds no '/', so no field entry is taken for a person.

Why: cluster maps merge entry by entry, the last writer winning. With one entry per person,
two nodes changing the same person during a network split kept only one change: a person
disabled on one PC while choosing a language on another came back enabled; a new password
could be undone the same way. Each node counts its own logouts under its own key, so their
sum only grows and no merge brings an ended session back.

Records written whole before this layout (fields inside `users[login]`, by nodes of sync
protocol 1, which nodes of this layout no longer sync with) read as before; a field entry,
once written, wins over the field of the record, but for being disabled: a person is
disabled when either says so (enabling clears both), so a disable is never undone by a
record written at the same time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import crdt_model as cm

if TYPE_CHECKING:
    from pycrdt import Doc

FIELDS = ("disabled", "lang", "badge", "pin")
"""Fields kept in entries of their own."""
_SESSIONS = "sessions/"


def user_record(doc: Doc[Any], login: str) -> dict[str, Any] | None:
    """A person's record with every field entry applied; None when there is no such person."""
    if "/" in login:
        return None
    users = cm.cluster_map(doc, "users")
    record = cm.cluster_get(doc, "users", login)
    if record is None:
        return None
    prefix = login + "/"
    for key in list(users.keys()):
        if key.startswith(prefix):
            _apply(record, key[len(prefix) :], cm.cluster_get(doc, "users", key))
    return record


def user_records(doc: Doc[Any]) -> dict[str, dict[str, Any]]:
    """Every person's record (field entries applied), by login."""
    entries = cm.cluster_items(doc, "users")
    records = {key: entry for key, entry in entries.items() if "/" not in key}
    for key, entry in entries.items():
        login, slash, field = key.partition("/")
        if slash and login in records:
            _apply(records[login], field, entry)
    return records


def _apply(record: dict[str, Any], field: str, entry: dict[str, Any] | None) -> None:
    if entry is None:
        return
    value = entry.get("v")
    if field.startswith(_SESSIONS):
        if isinstance(value, int) and value > 0:
            record["sessions"] = int(record.get("sessions", 0)) + value
    elif field == "disabled":
        # disabling wins: the record's own flag (written by a node of protocol 1, or kept by
        # a new password given at the same time) counts too; enabling clears both
        if value is True and record.get("disabled") is not True:
            record.update(disabled=True, disabled_at=entry.get("at"), disabled_by=entry.get("by"))
    elif field in FIELDS:
        if value is None:
            record.pop(field, None)
        else:
            record[field] = value


def put_field(doc: Doc[Any], login: str, field: str, value: Any, by: str) -> None:
    """Set (or clear, with None) one field of a person's record, alone."""
    if field not in FIELDS:
        raise ValueError(f"not a field kept alone: {field}")
    at = datetime.now(UTC).isoformat(timespec="seconds")
    cm.cluster_put(doc, "users", f"{login}/{field}", {"v": value, "at": at, "by": by})


def enable(doc: Doc[Any], login: str, by: str) -> None:
    """Let a person log in again: clear their disabled entry and their record's own flag."""
    put_field(doc, login, "disabled", False, by)
    record = cm.cluster_get(doc, "users", login)
    if record is not None and any(name.startswith("disabled") for name in record):
        kept = {k: v for k, v in record.items() if not k.startswith("disabled")}
        cm.cluster_put(doc, "users", login, kept)


def count_logout(doc: Doc[Any], login: str, node_code: str) -> None:
    """One more logout of this person, counted under this node's own key."""
    key = f"{login}/{_SESSIONS}{node_code}"
    mine = (cm.cluster_get(doc, "users", key) or {}).get("v")
    cm.cluster_put(doc, "users", key, {"v": (mine if isinstance(mine, int) else 0) + 1})
