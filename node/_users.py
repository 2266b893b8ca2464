"""People's records in the cluster document: badge, PIN and language beside role and password.

A user record holds `role`, `password` (salted scrypt), and optionally `badge` (SHA-256 of
the badge code), `pin` (salted scrypt of 4 to 8 digits) and `lang` (fr, nl or en); each of
the last three (and being disabled) is kept in a cluster entry of its own (_user_records),
so that changes made to one person on two PCs during a network split are all kept. The
record is replicated: a badge or a language set on one node follows its owner to every node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import crdt_model as cm

from ._auth import AdminMessage, AuthError, badge_hash, hash_pin
from ._node import USER_KEPT, ConflictError, Node, NodeError
from ._user_records import put_field, user_record, user_records
from ._web_support import LANGUAGES

if TYPE_CHECKING:
    from pycrdt import Doc

KEPT = USER_KEPT


class UnknownUserError(NodeError):
    """No user has this login."""

    status = 404


def active_user(node: Node, login: str) -> dict[str, Any] | None:
    """The record of a user who may log in, or None."""
    entry = user_record(node.docs[cm.CLUSTER_DOC], login)
    if entry is None or entry.get("revoked") or entry.get("disabled"):
        return None
    return entry


def _with_badge(doc: Doc[Any], digest: str) -> list[str]:
    users = user_records(doc)
    return sorted(login for login, entry in users.items() if entry.get("badge") == digest)


def badge_owner(node: Node, raw: str) -> str | None:
    """The login of the active user holding this badge; None when unknown or ambiguous.

    Two users can hold one badge only if two administrators gave it during a network
    split: then neither logs in with it until one of them is changed.
    """
    try:
        digest = badge_hash(raw)
    except AuthError:
        return None
    found = [
        login
        for login in _with_badge(node.docs[cm.CLUSTER_DOC], digest)
        if active_user(node, login)
    ]
    return found[0] if len(found) == 1 else None


def any_badge(node: Node) -> bool:
    """True when some active user has a badge (the login page then offers it)."""
    users = user_records(node.docs[cm.CLUSTER_DOC])
    return any(
        entry.get("badge") and not entry.get("revoked") and not entry.get("disabled")
        for entry in users.values()
    )


def public_record(login: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the API and the admin page show of a user: never a hash."""
    return {
        "login": login,
        "role": entry.get("role"),
        "badge": bool(entry.get("badge")),
        "pin": bool(entry.get("pin")),
        "lang": entry.get("lang"),
    }


async def async_update_user(
    node: Node, login: str, changes: Mapping[str, Any], by: str
) -> dict[str, Any]:
    """Set (a string) or clear (None) a user's `badge`, `pin` and `lang`; the new record.

    A badge belongs to one user only, and a user with a badge needs a PIN.
    """
    unknown = sorted(set(changes) - set(KEPT))
    if unknown:
        raise AuthError(AdminMessage("not_changeable", kept=", ".join(KEPT), name=unknown[0][:20]))
    prepared: dict[str, Any] = {}
    for name, value in changes.items():
        if value is not None and not isinstance(value, str):
            raise AuthError(AdminMessage("not_string_or_null", name=name))
        if value is None:
            prepared[name] = None
        elif name == "badge":
            prepared[name] = badge_hash(value)
        elif name == "pin":
            prepared[name] = await asyncio.to_thread(hash_pin, value)
        elif value not in LANGUAGES:
            raise AuthError(AdminMessage("bad_language", languages=", ".join(LANGUAGES)))
        else:
            prepared[name] = value
    async with node.exclusive:  # no other change slips between the read and the write
        return await _update(node, login, prepared, by)


async def _update(node: Node, login: str, prepared: dict[str, Any], by: str) -> dict[str, Any]:
    changed: dict[str, Any] = {}

    def save(doc: Doc[Any]) -> None:
        # read where the write is made (the record as the writes still on their way to the
        # disk leave it): a password replaced a moment before is never written back
        entry = user_record(doc, login)
        if entry is None:
            raise UnknownUserError(AdminMessage("unknown_user", login=login[:64]))
        badge = prepared.get("badge")
        if badge is not None:
            others = [other for other in _with_badge(doc, badge) if other != login]
            if others:
                raise ConflictError(AdminMessage("badge_taken", login=others[0]))
        for name, value in prepared.items():
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = value
        if entry.get("badge") and not entry.get("pin"):
            raise AuthError(AdminMessage("badge_needs_pin"))
        for name, value in prepared.items():
            put_field(doc, login, name, value, by)  # each alone: a split keeps every change
        changed.update(entry)

    await node.commit_cluster(save)
    return public_record(login, changed)


async def async_set_language(node: Node, login: str, lang: str) -> None:
    """Remember a user's language in their record (nothing written when unchanged)."""
    entry = active_user(node, login)
    if entry is not None and entry.get("lang") != lang:
        await async_update_user(node, login, {"lang": lang}, login)
