"""The rules a remote update must pass before anything of it is kept (pure, no I/O).

The update is applied to a scratch copy of the document while the root maps
are observed; the live document is never touched. (Compiled, an events update
of new entries only is read from its bytes instead, crdt_model/_updates.py:
the same rules, without the copy.) Rules by document:

- `events/<day>`: grows only. No item of it may ever be deleted: not by a
  delete, not by overwriting a key, not by an item that arrives already
  deleted or is overwritten inside the update itself (a compromised peer
  could otherwise slip a rewritten version of an event to a node that has
  not seen the original yet). Seen as: the document's delete set must not
  change. Each event added to map `events` passes `validate_event`, is stored
  under its id in its canonical encoding, and belongs to that day (compiled,
  shown so on its bytes first, crdt_model/_verify.py; else decoded); each entry
  added to map `acks` is keyed by an event id of that day (optionally followed
  by `/` and the acknowledging node's code, so that two nodes acknowledging
  one event during a partition never write the same key) and holds a CBOR map.
  Nothing else: the clock units the update adds equal the entries it adds (list
  or text content under a root shows in no map and would go unchecked).
- `ref/<export_id>`: written once; nothing present may change, and nothing
  may be added once the manifest is there. A value that would go without a
  replacement is held back as incomplete (UpdateIncomplete), never applied:
  when two nodes import the same export, the losing copy's deletion can be
  relayed ahead of the winning copy.
- `cluster`: small, rare writes among members, who may change any entry. Only
  its maps (members, users, ...) may hold anything; each value written is a
  CBOR map with text keys of at most MAX_CLUSTER_VALUE_BYTES, under a text
  key (a value of another shape would stop every node reading the document).

Every document: the bytes must be a well-formed update within the size
limit, and must integrate whole (no struct or deletion held back for a
missing dependency), so that nothing unchecked can surface later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pycrdt
from pycrdt import Doc, Map, MapEvent

import crdt_model as cm

from ._errors import UpdateIncomplete, UpdateRefused
from ._protocol import MAX_UPDATE_BYTES
from ._text import sanitize
from ._vectors import (
    EMPTY_STATE,
    EMPTY_UPDATE,
    covers,
    is_integrated,
    missing_clock,
    parse_state_vector,
)

MAX_ACK_BYTES = 4096
MAX_CLUSTER_VALUE_BYTES = 64 * 1024
EVENTS_ROOTS = ("events", "acks")
REF_ROOTS = ("manifest", "tables")

_DEFER = "defer: the update needs what it depends on"
_Rule = Callable[[str, str, dict[str, Any], bool], "str | None"]


def check_update(
    doc: Doc[Any] | None, name: str, update: bytes, *, max_bytes: int = MAX_UPDATE_BYTES
) -> bytes | None:
    """Check a remote update against `doc` (None: not held yet) without changing `doc`.

    Returns the part of the update that is new to the document (what to store,
    apply and relay), or None when it changes nothing. Raises UpdateRefused when
    a rule forbids it, UpdateIncomplete when it depends on changes not held here.
    The check runs on a scratch copy of `doc`: its cost grows with the document.
    `UpdateChecker` keeps the copies of events documents between checks instead.
    """
    _check_name(name, update, max_bytes)
    return _check_on(_copy(doc), name, update)


Entry = tuple[str, str, bytes]
"""An entry of an events document: (root map, key, value)."""


class Checked(NamedTuple):
    """A peer's update that passed the check."""

    change: bytes
    """What to store and apply."""
    entries: list[Entry] | None
    """When the update was read from its bytes (new entries only), every entry it adds, in
    its order: what a document's observers would hear of it. None otherwise."""
    state: bytes = EMPTY_STATE
    """The document's state vector the entries were read against: they are what the change
    adds only to a document still in that state (a local write since may hold a clock a
    forged entry claims)."""


class UpdateChecker:
    """`check_update` at the cost of the update, not of the document.

    Keeps a shadow copy of the most recently checked events documents. Before a
    check, the shadow catches up with the live document (local writes) by a diff;
    the update is then checked on the shadow, which keeps it when it passes. The
    caller applies that change to the live document next (under its lock): a
    shadow found ahead of its document (the change was never applied, e.g. the
    store failed) or touched by a refused or incomplete update is thrown away and
    made again from the document, so a shadow never makes a change look known.
    """

    def __init__(self, max_shadows: int = 4) -> None:
        self.max_shadows = max_shadows
        self._shadows: dict[str, tuple[Doc[Any] | None, Doc[Any]]] = {}
        """Document name -> (the live document it shadows, the shadow), most recent last."""

    def check(
        self,
        doc: Doc[Any] | None,
        name: str,
        update: bytes,
        *,
        max_bytes: int = MAX_UPDATE_BYTES,
    ) -> bytes | None:
        """As `check_update`."""
        checked = self.check_read(doc, name, update, max_bytes=max_bytes)
        return None if checked is None else checked.change

    def check_read(
        self,
        doc: Doc[Any] | None,
        name: str,
        update: bytes,
        *,
        max_bytes: int = MAX_UPDATE_BYTES,
        own: int | None = None,
    ) -> Checked | None:
        """As `check`, with the entries the change adds when it was read from its bytes.

        `own`: the client id this node writes under. Only it writes there, and it applies
        what it writes before any peer can have it: what a peer sends under that id beyond
        what the document holds is forged (it could take the clock of a local write still
        on its way to the disk, which yrs would then skip: an acknowledged event lost)."""
        clients = _check_name(name, update, max_bytes)
        state = EMPTY_STATE if doc is None else doc.get_state()
        if own in clients:
            _check_own(state, update, own)
        if not name.startswith(cm.EVENTS_PREFIX):
            return _checked(_check_on(_copy(doc), name, update))  # small or rare documents
        if cm.reads_bytes():  # compiled: an update of new entries only is read, not applied
            entries = cm.new_entries(update, parse_state_vector(state))
            if entries is not None and _all_new(doc, entries):
                _check_entries(name, entries)
                return Checked(update, entries, state) if entries else None
        if _known_only(state, update):
            return None  # a catch-up that came another way first, say: nothing to check
        shadow = self._shadow(doc, name)
        try:
            return _checked(_check_on(shadow, name, update))
        except BaseException:
            self._shadows.pop(name, None)
            raise

    def _shadow(self, doc: Doc[Any] | None, name: str) -> Doc[Any]:
        live, shadow = self._shadows.pop(name, (None, None))
        if shadow is not None and (live is not doc or not _behind(shadow, doc)):
            shadow = None  # another document, or ahead of it: what it holds was never applied
        if shadow is None:
            shadow = _copy(doc)
        elif doc is not None:
            shadow.apply_update(doc.get_update(shadow.get_state()))  # local writes since
        self._shadows[name] = (doc, shadow)
        while len(self._shadows) > self.max_shadows:
            del self._shadows[next(iter(self._shadows))]
        return shadow

    def forget(self, name: str) -> None:
        """Drop the shadow of a document (e.g. after it was replaced)."""
        self._shadows.pop(name, None)


def _beyond(update: bytes, state: bytes) -> bytes | None:
    """What of `update` is beyond `state` (its structs past it, and its whole delete set);
    None when pycrdt cannot read the update."""
    try:
        return pycrdt.get_update(update, state)
    except Exception:
        return None
    except BaseException as err:  # pyo3 panics derive from BaseException
        if type(err).__name__ != "PanicException":
            raise
        return None


def _check_own(state: bytes, update: bytes, own: int) -> None:
    beyond = _beyond(update, state)
    if beyond is None:
        raise UpdateRefused("malformed update")
    if own in (cm.clients_named(beyond) or ()):
        raise UpdateRefused("writes under this node's own client id")


def _known_only(state: bytes, update: bytes) -> bool:
    """True when every struct of `update` is held already (within `state`) and it deletes
    nothing: applying it changes nothing (yrs skips what it holds). An update pycrdt cannot
    read is left to the full check, which says so."""
    return state != EMPTY_STATE and _beyond(update, state) == EMPTY_UPDATE


def _all_new(doc: Doc[Any] | None, entries: list[Entry]) -> bool:
    """True when no entry's key is held already (it would replace a value: left to the check
    on a shadow, which says so; `new_entries` reads no update writing a key twice), in a
    document that never lost an entry (an entry placed before a deleted one of its key would
    integrate deleted: never so in an events document, whose deletions are refused)."""
    if doc is None:
        return True
    if _deletions(doc) != EMPTY_UPDATE:
        return False
    with doc.transaction() as txn:
        # what `key in map` does, in one transaction (it opens one per key: 20,000 of them
        # cost a heal a tenth of a second)
        has = {root: doc.get(root, type=Map).integrated.has for root in EVENTS_ROOTS}
        held = txn._txn  # as pycrdt's own Map.__contains__ passes it
        return not any(has[root](held, key) for root, key, _ in entries)


def _check_entries(name: str, entries: list[Entry]) -> None:
    """The rules of an events document for an update of new entries only (each next after
    what is held of its client, nothing deleted or replaced: it integrates whole);
    UpdateRefused for the first entry that breaks one."""
    rule = _events_rule(name)
    first_ms, end_ms = cm.events_day_ms(name)
    on_bytes = cm.reads_bytes()
    n = 0
    while n < len(entries):
        if on_bytes:  # compiled: the events its bytes show valid, in one call
            n = cm.first_unshown(entries, n, first_ms, end_ms)
            if n < 0:
                return
        root, key, value = entries[n]
        problem = rule(root, key, {"action": "add", "newValue": value}, False)
        if problem is not None:
            raise UpdateRefused(f"{name}: {root} {sanitize(key, 60)!r} {problem}")
        n += 1


def _checked(change: bytes | None) -> Checked | None:
    return None if change is None else Checked(change, None)


def _behind(shadow: Doc[Any], doc: Doc[Any] | None) -> bool:
    """True when `doc` holds all `shadow` holds (an events document only grows)."""
    have = EMPTY_STATE if doc is None else doc.get_state()
    return covers(parse_state_vector(have), parse_state_vector(shadow.get_state()))


def _check_name(name: str, update: bytes, max_bytes: int) -> set[int]:
    """The clients the update names, once its document, size and shape are allowed."""
    if not cm.is_doc_name(name):
        raise UpdateRefused(f"unknown document {sanitize(name, 60)!r}")
    if len(update) > max_bytes:
        raise UpdateRefused(f"update of {len(update)} bytes exceeds {max_bytes}")
    clients = cm.clients_named(update)
    if clients is None:  # yrs would make two items of one id of a client twice: a crash
        raise UpdateRefused("malformed update: a client twice, or content of no document here")
    return clients


def _copy(doc: Doc[Any] | None) -> Doc[Any]:
    scratch: Doc[Any] = Doc()
    if doc is not None:
        scratch.apply_update(doc.get_update())
    return scratch


def _check_on(scratch: Doc[Any], name: str, update: bytes) -> bytes | None:
    """Apply `update` to `scratch` while watching it; the new part, or a refusal."""
    rule, roots = _rule_for(name)
    watch = _Watch(scratch, roots)
    deleted_before = _deletions(scratch)
    clocks_before = parse_state_vector(scratch.get_state())
    captured: list[bytes] = []
    sub = scratch.observe(lambda ev: captured.append(ev.update))
    try:
        scratch.apply_update(update)
    except Exception as err:
        raise UpdateRefused(f"malformed update: {sanitize(err, 80)}") from None
    except BaseException as err:  # pyo3 panics derive from BaseException
        if type(err).__name__ != "PanicException":
            raise
        raise UpdateRefused("malformed update") from None
    finally:
        scratch.unobserve(sub)
        watch.close()
    if roots:
        extra = set(scratch.keys()) - set(roots)
        if extra:
            shown = ", ".join(sorted(sanitize(r, 40) for r in extra)[:3])
            raise UpdateRefused(f"{name}: unexpected root {shown}")
    deferred = False
    for root, key, change in watch.changes:
        problem = rule(root, key, change, watch.had_manifest)
        if problem is _DEFER:
            deferred = True
        elif problem is not None:
            raise UpdateRefused(f"{name}: {root} {sanitize(key, 60)!r} {problem}")
    if name.startswith(cm.EVENTS_PREFIX) and _deletions(scratch) != deleted_before:
        raise UpdateRefused(f"{name}: would delete or overwrite entries; events only grow")
    if deferred or not is_integrated(update, scratch.get_state()):
        raise UpdateIncomplete(f"{name}: the update depends on changes not held here")
    if name.startswith(cm.REF_PREFIX):
        _ref_whole(scratch, name)
    if name.startswith(cm.EVENTS_PREFIX):
        # whole now: each entry written took one clock unit; any unit more is content no map
        # shows (list or text items under a root), which nothing would ever check or read
        added = missing_clock(clocks_before, parse_state_vector(scratch.get_state()))
        if added != len(watch.changes):
            raise UpdateRefused(f"{name}: holds content that is not events or acks")
    if not captured:
        return None
    return captured[0] if len(captured) == 1 else pycrdt.merge_updates(*captured)


def _deletions(doc: Doc[Any]) -> bytes:
    """The encoded delete set of a document (an update with no structs)."""
    return doc.get_update(doc.get_state())


class _Watch:
    """Records every key change of some root maps of a document."""

    def __init__(self, doc: Doc[Any], roots: tuple[str, ...]) -> None:
        self.changes: list[tuple[str, str, dict[str, Any]]] = []
        self._subs: list[tuple[Map[Any], Any]] = []
        self.had_manifest = False
        for root in roots:
            shared: Map[Any] = doc.get(root, type=Map)
            if root == "manifest":
                self.had_manifest = "manifest" in shared
            self._subs.append((shared, shared.observe(self._recorder(root))))

    def _recorder(self, root: str) -> Callable[[MapEvent], None]:
        def record(event: MapEvent) -> None:
            keys: dict[str, dict[str, Any]] = event.keys  # type: ignore[attr-defined]
            self.changes.extend((root, key, change) for key, change in keys.items())

        return record

    def close(self) -> None:
        for shared, sub in self._subs:
            shared.unobserve(sub)
        self._subs.clear()


def _rule_for(name: str) -> tuple[_Rule, tuple[str, ...]]:
    if name.startswith(cm.EVENTS_PREFIX):
        return _events_rule(name), EVENTS_ROOTS
    if name.startswith(cm.REF_PREFIX):
        return _ref_rule_for(name), REF_ROOTS
    return _cluster_rule, cm.CLUSTER_MAPS


def _cluster_rule(root: str, key: str, change: dict[str, Any], had_manifest: bool) -> str | None:
    del root, had_manifest
    if change.get("action") == "delete":
        return None
    if not isinstance(key, str) or len(key) > 256:
        return "is not a valid key"
    value = change.get("newValue")
    if not isinstance(value, bytes | bytearray) or len(value) > MAX_CLUSTER_VALUE_BYTES:
        return f"must be an encoded entry of at most {MAX_CLUSTER_VALUE_BYTES} bytes"
    try:
        cm.decode_map(value)
    except cm.CodecError:
        return "is not an encoded map"
    return None


def _events_rule(name: str) -> _Rule:
    first_ms, end_ms = cm.events_day_ms(name)
    on_bytes = cm.reads_bytes()  # compiled: the bytes check first (crdt_model/_verify.py)

    def rule(root: str, key: str, change: dict[str, Any], had_manifest: bool) -> str | None:
        del had_manifest
        action = change.get("action")
        if action == "delete":
            return "would be deleted"
        if action == "update":
            return "would be rewritten"
        if root == "events":
            value = change.get("newValue")
            if (
                on_bytes
                and isinstance(value, bytes | bytearray)  # pycrdt gives a bytearray
                and cm.shown_valid(bytes(value), key, first_ms, end_ms)
            ):
                return None  # its bytes show it passes every check of _check_event
            return _check_event(name, key, value)
        return _check_ack(name, key, change.get("newValue"))

    return rule


def _check_event(name: str, key: str, value: Any) -> str | None:
    if not isinstance(value, bytes | bytearray):
        return "is not an encoded event"
    try:
        decoded = cm.decode_map(value)
        event = cm.validate_event(decoded, len(value))
    except (cm.CodecError, cm.EventError) as err:
        return f"is not a valid event: {sanitize(err, 120)}"
    if event["id"] != key:
        return "is stored under another id"
    # validated: hlc is the fixed-width text of its timestamp, milliseconds first
    if cm.events_doc_name(cm.Timestamp(int(event["hlc"][:13]))) != name:
        return "belongs to another day"
    if not _canonical(bytes(value), decoded, event):
        return "is not in its canonical form"
    return None


def _canonical(value: bytes, decoded: dict[str, Any], event: dict[str, Any]) -> bool:
    """True when `value` is exactly how `encode` writes the validated `event`: canonical
    bytes holding what validation kept unchanged (compiled, judged on the bytes, which
    spares encoding the event again; else, or for a shape it does not judge, encoded)."""
    judged = cm.canonical_form(value) if cm.reads_bytes() else None
    if judged is None:
        return cm.encode(event) == value
    # Equal maps encode alike because validation never returns a value equal to what it got
    # but of another type (1 for True, 1.0 for 1): it keeps the value, or makes another of a
    # type that compares unequal (a cycle number's int made text). A check that did would
    # need the encode comparison above.
    return judged and decoded == event


def _check_ack(name: str, key: str, value: Any) -> str | None:
    event_id, slash, node = key.partition("/")
    if slash and not cm.is_node_code(node):
        return "is not an event id, optionally followed by /<node code>"
    try:
        ts, _ = cm.split_event_id(event_id)
    except cm.ClockError:
        return "is not an event id"
    if cm.events_doc_name(ts) != name:
        return "acknowledges an event of another day"
    if not isinstance(value, bytes | bytearray) or len(value) > MAX_ACK_BYTES:
        return f"must be an encoded ack of at most {MAX_ACK_BYTES} bytes"
    try:
        cm.decode_map(value)
    except cm.CodecError:
        return "is not an encoded ack"
    return None


def _ref_rule_for(name: str) -> _Rule:
    export_id = name.removeprefix(cm.REF_PREFIX)

    def rule(root: str, key: str, change: dict[str, Any], had_manifest: bool) -> str | None:
        problem = _ref_rule(root, key, change, had_manifest)
        if problem is None and root == "manifest" and change.get("action") == "add":
            return _manifest_problem(key, change.get("newValue"), export_id)
        return problem

    return rule


def _manifest_problem(key: str, value: Any, export_id: str) -> str | None:
    """What makes a reference's manifest entry unreadable by the nodes (None when fine)."""
    try:
        found = cm.decode(value)
    except cm.CodecError:
        return None  # said by _ref_rule
    if key == "manifest":
        if not isinstance(found, dict) or found.get("export_id") != export_id:
            return "does not name its export"
        if not isinstance(found.get("exported_at"), str):
            return "does not say when the export was made"
    elif key == "tables" and (
        not isinstance(found, dict)
        or not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in found.items())
    ):
        return "is not a count of rows per table"
    return None


def _ref_whole(doc: Doc[Any], name: str) -> None:
    """A reference with its manifest (nothing comes after it) has every table whole."""
    if cm.read_manifest(doc) is None:
        return
    try:
        for table in cm.table_names(doc):
            cm.read_table(doc, table)
    except (cm.DocumentError, cm.CodecError) as err:
        raise UpdateRefused(f"{name}: {sanitize(err, 80)}") from None


def _ref_rule(root: str, key: str, change: dict[str, Any], had_manifest: bool) -> str | None:
    del root
    action = change.get("action")
    if action == "delete":
        # Two nodes importing the same export write each key twice; a node that saw
        # both may relay the loser's deletion before the winner arrives. Never
        # applied; a full diff (STEP1) brings the winner along.
        return _DEFER
    if action == "update":
        if change.get("oldValue") != change.get("newValue"):
            return "would be rewritten in a written reference"
        return None
    if had_manifest:
        return "would be added to a reference written already"
    value = change.get("newValue")
    if not isinstance(value, bytes | bytearray):
        return "is not an encoded value"
    try:
        cm.decode(value)
    except cm.CodecError:
        return "is not an encoded value"
    return None
