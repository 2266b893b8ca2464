"""An update of new entries only is read from its bytes, not applied to a shadow: the
outcome is the shadow check's, whatever the update (crdt_model/_updates.py)."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc

import crdt_model as cm
import sync
from sync import UpdateChecker, UpdateIncomplete, UpdateRefused
from sync._vectors import write_varuint
from tests.helpers import changed_bytes

from .sync_helpers import copy, doc_of, event, events_doc

DAY = doc_of(event(0))


def _ack(doc: Doc[Any], key: str) -> None:
    with doc.transaction():
        cm.acks_map(doc)[key] = cm.encode({"by": "B"})


def outcome(
    monkeypatch: pytest.MonkeyPatch, local: Doc[Any], update: bytes, *, read: bool | None
) -> tuple[str, Any]:
    """What a check of `update` against a copy of `local` gives: refused, incomplete, or the
    entries the document then holds (read: the bytes read first, as compiled; False: the
    shadow check, as interpreted; None: the plain check on a scratch copy, `check_update`)."""
    monkeypatch.setattr(cm, "reads_bytes", lambda: bool(read))
    doc = copy(local, 99)
    check = sync.check_update if read is None else UpdateChecker().check
    try:
        change = check(doc, DAY, update)
    except UpdateRefused:
        return "refused", None
    except UpdateIncomplete:
        return "incomplete", None
    if change is None:
        return "nothing new", None
    doc.apply_update(change)
    held = (dict(cm.events_map(doc).items()), dict(cm.acks_map(doc).items()))
    entries = {k: bytes(v) for m in held for k, v in m.items()}
    return "held", (entries, sync.parse_state_vector(doc.get_state()))


def same(monkeypatch: pytest.MonkeyPatch, local: Doc[Any], update: bytes) -> tuple[str, Any]:
    read = outcome(monkeypatch, local, update, read=True)
    assert read == outcome(monkeypatch, local, update, read=False)
    assert read == outcome(monkeypatch, local, update, read=None)
    return read


def test_new_events_and_acks_are_read_not_applied_to_a_shadow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = events_doc(event(1), client_id=1)
    remote = copy(local, 2)
    cm.add_event(remote, event(2, "B"))
    _ack(remote, event(1)["id"] + "/B")
    update = remote.get_update(local.get_state())
    entries = cm.new_entries(update, {1: 1})
    assert entries is not None
    assert [(root, key) for root, key, _ in entries] == [
        ("events", event(2, "B")["id"]),
        ("acks", event(1)["id"] + "/B"),
    ]
    copies: list[Any] = []
    real = pycrdt.Doc.apply_update
    monkeypatch.setattr(pycrdt.Doc, "apply_update", lambda d, u: copies.append(u) or real(d, u))
    state, held = outcome(monkeypatch, local, update, read=True)
    assert state == "held"
    assert len(copies) == 2  # the copy made by `outcome`, then the change: no shadow
    assert held[0][event(2, "B")["id"]] == cm.encode(event(2, "B"))


def test_a_key_held_already_goes_to_the_shadow_which_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = events_doc(event(1), client_id=1)
    forged = {**event(1), "text": "rewritten"}
    stranger = events_doc(client_id=3)  # never saw the original: its item has nothing to its left
    with stranger.transaction():
        cm.events_map(stranger)[forged["id"]] = cm.encode(forged)
    update = stranger.get_update()
    assert cm.new_entries(update, {1: 1}) is not None  # of the shape: new to its writer
    assert same(monkeypatch, local, update) == ("refused", None)
    twice = events_doc(client_id=4)  # one key written twice in one update
    with twice.transaction():
        cm.events_map(twice)[event(5)["id"]] = cm.encode(event(5))
    with twice.transaction():
        cm.events_map(twice)[event(5)["id"]] = cm.encode(event(5))
    assert same(monkeypatch, local, twice.get_update())[0] == "refused"
    first, second = copy(local, 5), copy(local, 6)  # one key by two clients, in one update
    for writer in (first, second):
        cm.add_event(writer, event(7, "B"))
    both = pycrdt.merge_updates(
        first.get_update(local.get_state()), second.get_update(local.get_state())
    )
    assert cm.new_entries(both, {1: 1}) is None  # one of them would replace the other
    assert same(monkeypatch, local, both)[0] == "refused"


def test_known_parts_gaps_deletions_and_other_days_match_the_shadow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = events_doc(event(1), event(2), client_id=1)
    remote = copy(local, 2)
    first = remote.get_state()
    cm.add_event(remote, event(3, "B"))
    second = remote.get_state()
    cm.add_event(remote, event(4, "B"))
    whole = remote.get_update()  # partly known
    assert cm.new_entries(whole, {1: 2}) is None
    assert same(monkeypatch, local, whole)[0] == "held"
    gap = remote.get_update(second)  # its client's first event missing
    assert same(monkeypatch, local, gap) == ("incomplete", None)
    assert same(monkeypatch, local, remote.get_update(first))[0] == "held"
    with remote.transaction():
        del cm.events_map(remote)[event(1)["id"]]
    assert same(monkeypatch, local, remote.get_update(first)) == ("refused", None)
    other_day = events_doc(event(5, "C", day=1), client_id=5)
    assert same(monkeypatch, local, other_day.get_update()) == ("refused", None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_updates_changed_anywhere_give_what_the_shadow_check_gives(
    data: st.DataObject,
) -> None:
    local = events_doc(event(1), event(2), client_id=1)
    remote = copy(local, data.draw(st.sampled_from([2, 300, 2**40])))
    for n in range(data.draw(st.integers(1, 4))):
        cm.add_event(remote, event(10 + n, "B"))
    if data.draw(st.booleans()):
        _ack(remote, event(1)["id"] + "/B")
    target = copy(local, 98)
    if data.draw(st.booleans()):  # the update came another way first: all of it is known
        target.apply_update(remote.get_update(local.get_state()))
    since = data.draw(st.sampled_from([local.get_state(), b"\x00"]))  # new only, or whole
    blob = changed_bytes(data, remote.get_update(since), 2, least=0)
    with pytest.MonkeyPatch.context() as monkeypatch:
        same(monkeypatch, target, blob)


def test_a_client_id_beyond_53_bits_is_left_to_the_shadow(monkeypatch: pytest.MonkeyPatch) -> None:
    # yrs keeps 53 bits of a client id: 2**53 + 1 names client 1, whose first item is held,
    # so the update changes nothing; read as written it would look new and be relayed
    local = events_doc(event(1), client_id=1)
    forged = event(3, "B")
    item = cm.encode(forged)
    entry = (
        b"\x28\x01\x06events"
        + write_varuint(len(forged["id"]))
        + forged["id"].encode()
        + b"\x01\x74"
        + write_varuint(len(item))
        + item
    )
    update = b"\x01\x01" + write_varuint(2**53 + 1) + b"\x00" + entry + b"\x00"
    assert cm.new_entries(update, {1: 1}) is None
    assert same(monkeypatch, local, update) == ("nothing new", None)


def test_a_document_that_lost_an_entry_is_left_to_the_shadow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # never so for an events document (deletions are refused), but a key written again
    # before a deleted entry of it would integrate deleted: only the shadow sees that
    lost = events_doc(event(1), client_id=1)
    with lost.transaction():
        del cm.events_map(lost)[event(1)["id"]]
    again = events_doc(event(1), client_id=3)
    update = again.get_update()
    assert cm.new_entries(update, {1: 1}) is not None
    assert same(monkeypatch, lost, update)[0] == "held"


def test_an_update_naming_a_client_twice_is_refused_before_pycrdt_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # yrs would make two items of one id (5:0): whoever then reads the map crashes
    def run(client: int, ev: dict[str, Any]) -> bytes:
        item = cm.encode(ev)
        key = ev["id"].encode()
        entry = b"\x28\x01\x06events" + write_varuint(len(key)) + key + b"\x01\x74"
        return b"\x01" + write_varuint(client) + b"\x00" + entry + write_varuint(len(item)) + item

    update = b"\x02" + run(5, event(3, "B")) + run(2**53 + 5, event(4, "B")) + b"\x00"
    local = events_doc(event(1), client_id=1)
    assert same(monkeypatch, local, update) == ("refused", None)


def test_an_update_of_nothing_new_is_known_without_a_shadow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = events_doc(event(1), event(2), client_id=1)
    remote = copy(local, 2)
    cm.add_event(remote, event(3, "B"))
    catch_up = remote.get_update(local.get_state())
    local.apply_update(catch_up)  # it came another way first (a relay, say)
    forger = events_doc(client_id=1)  # rewrites held entries under their own ids
    with forger.transaction():
        for n in (1, 2):
            cm.events_map(forger)[event(n)["id"]] = cm.encode({**event(n), "text": "autre"})
    known = [catch_up, remote.get_update(), forger.get_update()]
    copies: list[bytes] = []
    real = pycrdt.Doc.apply_update
    monkeypatch.setattr(pycrdt.Doc, "apply_update", lambda d, u: copies.append(u) or real(d, u))
    checker = UpdateChecker()
    for update in known:
        assert checker.check(local, DAY, update) is None
    assert copies == []  # neither a shadow nor a copy: nothing to apply
    for update in known:  # what the check on a copy says: yrs skips what it holds
        assert sync.check_update(local, DAY, update) is None
    assert cm.decode_map(cm.events_map(local)[event(1)["id"]]) == event(1)
    # deleting a held entry is no known update: refused as ever
    deleter = copy(local, 2)
    with deleter.transaction():
        del cm.events_map(deleter)[event(1)["id"]]
    deletion = deleter.get_update(local.get_state())
    with pytest.raises(UpdateRefused):
        checker.check(local, DAY, deletion)


def test_structs_under_the_checking_nodes_own_client_beyond_what_it_holds_are_refused() -> None:
    local = events_doc(event(1), client_id=7)  # this node writes as client 7
    peer = copy(local, 2)
    cm.add_event(peer, event(2, "B"))
    forger = copy(local, 7)  # a peer writing as if it were this node
    cm.add_event(forger, event(3, "B"))
    checker = UpdateChecker()
    with pytest.raises(UpdateRefused, match="own client id"):
        checker.check_read(local, DAY, forger.get_update(local.get_state()), own=7)
    # this node's own entries relayed back, with a peer's new one: taken
    whole = peer.get_update()
    named = cm.clients_named(whole)
    assert named is not None
    assert 7 in named
    checked = checker.check_read(local, DAY, whole, own=7)
    assert checked is not None
    assert checker.check_read(local, DAY, whole, own=8) is not None  # another node's check
    assert checker.check_read(local, DAY, forger.get_update(local.get_state()), own=8)
