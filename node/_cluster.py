"""Cluster membership: invitations, joining, listing and revoking nodes."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from pycrdt import Doc

import crdt_model as cm
from sync import sanitize

from ._auth import AdminMessage
from ._layout import DataDir, DataDirError
from ._node import ConflictError, NodeError, creating_store
from ._pki import (
    Invite,
    NodePki,
    PkiError,
    fingerprint,
    load_cert,
    make_csr,
    new_invite,
    new_key,
    sign_node,
)

if TYPE_CHECKING:
    from ._node import Node

_LOGGER = logging.getLogger(__name__)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NOT_THE_INVITER = (
    "the peer is not the node that made this token (another certificate): refusing;"
    " check the address, or ask that node for a new token"
)


def code_sequence() -> list[str]:
    """Node short codes in the order they are given: A..Z, AA..ZZ."""
    return list(_LETTERS) + [a + b for a in _LETTERS for b in _LETTERS]


def next_code(taken: set[str]) -> str:
    """The first short code nobody holds or has been promised."""
    for code in code_sequence():
        if code not in taken:
            return code
    raise NodeError(AdminMessage("no_code_left"))


def taken_codes(node: Node, now_s: int) -> set[str]:
    """Codes held by members or promised by an unexpired, unused invitation."""
    doc = node.docs[cm.CLUSTER_DOC]
    taken = {str(m["code"]) for m in cm.cluster_items(doc, "members").values()}
    for invite in cm.cluster_items(doc, "invites").values():
        if invite.get("used_by") or int(invite.get("expires", 0)) > now_s:
            taken.add(str(invite["code"]))
    return taken


def members(node: Node) -> list[dict[str, Any]]:
    """Every member, by code: node id, name, zone, state, certificate fingerprint."""
    out = []
    for node_id, entry in cm.cluster_items(node.docs[cm.CLUSTER_DOC], "members").items():
        out.append(
            {
                "node_id": node_id,
                "code": entry.get("code"),
                "name": entry.get("name"),
                "zone": entry.get("zone"),
                "state": "revoked" if node.is_revoked(node_id) else "member",
                "cert_fingerprint": entry.get("cert_fingerprint"),
                "joined_at": entry.get("joined_at"),
                "revoked_at": entry.get("revoked_at"),
                "self": node_id == node.node_id,
            }
        )
    return sorted(out, key=lambda m: (len(str(m["code"])), str(m["code"])))


def member_by_cert(node: Node, node_id: str, cert_fp: str) -> dict[str, Any] | None:
    """The member a peer certificate belongs to, if it is one and is not revoked."""
    entry = cm.cluster_get(node.docs[cm.CLUSTER_DOC], "members", node_id)
    if entry is None or node.is_revoked(node_id) or entry.get("cert_fingerprint") != cert_fp:
        return None
    pinned = node.pinned_fingerprint(node_id)
    if pinned is not None and pinned != cert_fp:
        return None  # the entry was rewritten with another certificate since we first saw it
    return entry


async def async_invite(node: Node, by: str, now_s: int | None = None) -> str:
    """A one-time join token for a new node, valid for an hour."""
    pki = NodePki(node.data.pki)
    if not pki.ca_key.exists():
        raise NodeError(AdminMessage("cannot_invite"))
    now_s = int(time.time()) if now_s is None else now_s
    mine = fingerprint(load_cert(pki.cert.read_bytes()))  # what the sync listener presents
    invite = new_invite(node.cluster_id, node.node_id, pki.ca_fingerprint(), now_s, mine)
    async with node.exclusive:  # two invitations at once promise two codes
        code = next_code(taken_codes(node, now_s))
        entry = {"code": code, "expires": invite.expires, "by": by, "inviter": node.node_id}
        await node.commit_cluster(
            lambda doc: cm.cluster_put(doc, "invites", invite.secret_hash, entry)
        )
        issued = {h: e for h, e in _issued(node).items() if e >= now_s}
        await node.store.async_put_meta({ISSUED: {**issued, invite.secret_hash: invite.expires}})
    return invite.encode()


ISSUED = "invites_issued"
"""Store meta: the invitations this node made (secret hash -> expiry), kept on this node only.

The cluster document's `invites` map says which codes are promised, for every node to see;
but any member may write any entry of it, so it cannot say which invitations are real: a
member could plant one there and join through it after it was revoked. A node admits only
through an invitation it made itself, recorded here, used once."""


def _issued(node: Node) -> dict[str, int]:
    found = node.store.get_meta(ISSUED)
    if not isinstance(found, dict):
        return {}
    return {str(h): int(e) for h, e in found.items() if isinstance(e, int)}


async def async_accept_join(
    node: Node, request: dict[str, Any], now_s: int | None = None
) -> dict[str, Any]:
    """Admit a joining node that presents a valid, unused invitation secret."""
    now_s = int(time.time()) if now_s is None else now_s
    keys = ("secret", "csr", "name", "zone", "node_id")
    if not all(isinstance(request.get(k), str) for k in keys):
        raise NodeError("a join request carries secret, csr, name, zone and node_id")
    fields = {k: str(request[k]) for k in keys}
    if (
        fields["zone"] not in cm.ZONES
        or not fields["name"].strip()
        or len(fields["name"]) > 64
        or len(fields["node_id"]) != 32
    ):
        raise NodeError("bad name, zone or node id in the join request")
    async with node.exclusive:  # an invitation is used once, even by two joins at once
        return await _admit(node, fields, now_s)


async def _admit(node: Node, fields: dict[str, str], now_s: int) -> dict[str, Any]:
    secret, csr, name, zone, new_id = (
        fields[k] for k in ("secret", "csr", "name", "zone", "node_id")
    )
    invite_hash = Invite(node.cluster_id, node.node_id, "", secret, 0).secret_hash
    doc = node.docs[cm.CLUSTER_DOC]
    invite = cm.cluster_get(doc, "invites", invite_hash)
    issued = _issued(node)
    # the invitation is accepted only by the node that made it (single use holds in a split),
    # and only if this node's own record has it: the document's entry may have been planted
    if invite is None or invite.get("inviter") != node.node_id:
        raise PermissionError("unknown join token")
    if invite.get("used_by"):
        raise PermissionError("this join token was used already")
    if invite_hash not in issued:
        raise PermissionError("unknown join token")
    if issued[invite_hash] < now_s:
        raise PermissionError("this join token has expired")
    if cm.cluster_get(doc, "members", new_id) is not None:
        raise ConflictError("a node with this id is a member already")
    if _code_clash(doc, invite_hash, str(invite["code"]), now_s):
        raise ConflictError(
            f"code {invite['code']} of this token was promised to another node meanwhile: "
            "make a new invitation"
        )
    pki = NodePki(node.data.pki)
    try:
        cert_pem = sign_node(
            pki.ca_key.read_bytes(), pki.ca_cert.read_bytes(), csr.encode(), new_id
        )
    except PkiError as err:
        raise NodeError(str(err)) from None
    code = str(invite["code"])
    at = datetime.now(UTC).isoformat(timespec="seconds")
    member = {
        "name": name.strip(),
        "code": code,
        "zone": zone,
        "joined_at": at,
        "cert_fingerprint": fingerprint(load_cert(cert_pem)),
        "invited_by": node.node_id,
    }

    def admit(d: Doc[Any]) -> None:
        cm.cluster_put(d, "invites", invite_hash, {**invite, "used_by": new_id, "used_at": at})
        cm.cluster_put(d, "members", new_id, member)

    await node.commit_cluster(admit)
    del issued[invite_hash]  # used: whatever the document's entry says later
    await node.store.async_put_meta({ISSUED: issued})
    _LOGGER.info("node %s (%s) joined the cluster", code, name.strip()[:64])
    return {
        "cluster_id": node.cluster_id,
        "node_id": new_id,
        "code": code,
        "ca_cert": pki.ca_cert.read_text(),
        "ca_key": pki.ca_key.read_text(),
        "cert": cert_pem.decode(),
        "cluster": base64.b64encode(doc.get_update()).decode(),
    }


def _code_clash(doc: Doc[Any], invite_hash: str, code: str, now_s: int) -> bool:
    """True when another member holds `code`, or another invitation promising it goes first.

    Two nodes in sync that invite at the same moment may promise the same code; both see
    both promises before either joins, and agree that the smaller hash goes first.
    """
    if any(m.get("code") == code for m in cm.cluster_items(doc, "members").values()):
        return True
    return any(
        other.get("code") == code
        and key < invite_hash
        and (other.get("used_by") or int(other.get("expires", 0)) >= now_s)
        for key, other in cm.cluster_items(doc, "invites").items()
    )


async def async_revoke(node: Node, which: str, by: str) -> dict[str, Any]:
    """Revoke a member by node id or code: every peer refuses it from then on."""
    async with node.exclusive:
        return await _revoke(node, which, by)


async def _revoke(node: Node, which: str, by: str) -> dict[str, Any]:
    doc = node.docs[cm.CLUSTER_DOC]
    for node_id, entry in cm.cluster_items(doc, "members").items():
        if which in (node_id, entry.get("code")):
            if node_id == node.node_id:
                raise NodeError(AdminMessage("revoke_self"))
            answer = {
                "node_id": node_id,
                "code": entry.get("code"),
                "name": entry.get("name"),
                "zone": entry.get("zone"),
                "state": "revoked",
            }
            if entry.get("revoked"):
                return answer
            revoked = {
                **entry,
                "revoked": True,
                "revoked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "revoked_by": by,
            }
            await node.commit_cluster(_put_member(node_id, revoked))
            _LOGGER.warning(
                "node %s (%s) revoked by %s", entry.get("code"), str(entry.get("name"))[:64], by
            )
            return answer
    raise NodeError(AdminMessage("unknown_member", node=which[:40]))


def _unreachable(peer: str, err: Exception) -> str:
    """Why the inviter could not be asked, in plain words."""
    if isinstance(err, aiohttp.ClientSSLError | aiohttp.ServerDisconnectedError):
        return (
            f"{peer} does not speak the sync protocol: give the inviting node's sync address"
            " (--sync-listen, port 8701 by default), not its web address"
        )
    if isinstance(err, aiohttp.ClientConnectorError):
        reason = err.os_error.strerror or type(err.os_error).__name__
        return f"cannot reach {peer}: {reason} (is the node running, is its sync port open?)"
    if isinstance(err, ValueError):
        return f"{peer} answered something other than a node's answer"
    return f"cannot reach {peer}: {sanitize(type(err).__name__, 60)}"


CLOCK_DOUBT_S = 24 * 3600
"""How far this PC's clock may be off before a token it finds expired is refused here
rather than by the inviter, whose clock made it."""


def _put_member(node_id: str, entry: dict[str, Any]) -> Callable[[Doc[Any]], None]:
    return lambda doc: cm.cluster_put(doc, "members", node_id, entry)


async def async_join(
    data: DataDir, *, name: str, zone: str, token: str, peer: str
) -> dict[str, Any]:
    """Join an existing cluster through the inviting node's sync address."""
    invite = Invite.decode(token)
    now = int(time.time())
    if invite.expires < now - CLOCK_DOUBT_S:
        # clearly stale; closer calls are the inviter's (a PC on an isolated segment often
        # has no time server: its clock may be hours off)
        expired = datetime.fromtimestamp(invite.expires, UTC).isoformat(timespec="minutes")
        clock = datetime.fromtimestamp(now, UTC).isoformat(timespec="minutes")
        raise PkiError(
            f"this join token expired at {expired} UTC (this PC's clock says {clock} UTC);"
            " ask for a new one (sterimesh invite), or set this PC's clock"
        )
    admitted: list[str] = []
    try:
        return await _join(data, invite, name=name, zone=zone, peer=peer, admitted=admitted)
    except (PkiError, DataDirError, OSError) as err:
        if not admitted:
            raise
        # the inviter made this node a member; it could not be made here (a disk error...)
        raise PkiError(
            f"{err}. Node {admitted[0]} was admitted by {peer} but not made here: on a member,"
            f" run sterimesh revoke {admitted[0]}, then make a new invitation"
        ) from None


async def _join(
    data: DataDir, invite: Invite, *, name: str, zone: str, peer: str, admitted: list[str]
) -> dict[str, Any]:
    with creating_store(data, name=name, zone=zone) as (store, staged):
        node_id = uuid.uuid4().hex
        key, key_pem = new_key()
        base = f"https://{peer}"
        # both requests go to the node that made the token, and to no other: its certificate
        # is pinned (every member holds the CA key, a revoked one too)
        pin = aiohttp.Fingerprint(bytes.fromhex(invite.inviter_fingerprint))
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(base + "/join/ca", ssl=pin) as resp:
                    ca_pem = await resp.read()
                    if resp.status != 200:
                        raise PkiError("the peer did not hand out its cluster CA")
            except aiohttp.ServerFingerprintMismatch:
                raise PkiError(_NOT_THE_INVITER) from None
            except aiohttp.ClientError as err:
                raise PkiError(_unreachable(peer, err)) from None
            ca = load_cert(ca_pem)
            if fingerprint(ca) != invite.ca_fingerprint:
                raise PkiError("the peer's cluster CA is not the one of the token: refusing")
            body = {
                "secret": invite.secret,
                "csr": make_csr(key, node_id).decode(),
                "name": name,
                "zone": zone,
                "node_id": node_id,
            }
            try:  # the secret goes to the pinned node only
                async with session.post(base + "/join", json=body, ssl=pin) as resp:
                    answer = await resp.json(content_type=None)
            except aiohttp.ServerFingerprintMismatch:
                raise PkiError(_NOT_THE_INVITER) from None
            except (aiohttp.ClientError, ValueError) as err:
                raise PkiError(_unreachable(peer, err)) from None
            if resp.status != 200:
                error = answer.get("error") if isinstance(answer, dict) else None
                said = sanitize(str(error), 200)
                raise PkiError(f"the peer refused to admit this node: {said}")
        admitted.append(str(answer.get("code")))
        if fingerprint(load_cert(answer["ca_cert"].encode())) != invite.ca_fingerprint:
            raise PkiError("the peer answered with another CA: refusing")
        pki = NodePki(staged.pki)
        pki.write(pki.key, key_pem)
        pki.write(pki.cert, answer["cert"].encode())
        pki.write(pki.ca_cert, answer["ca_cert"].encode())
        pki.write(pki.ca_key, answer["ca_key"].encode())
        identity = {
            "node_id": node_id,
            "code": answer["code"],
            "name": name.strip(),
            "zone": zone,
            "cluster_id": answer["cluster_id"],
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        store.initialise(
            {**identity, "incarnation": 0, "client_ids": []},
            {cm.CLUSTER_DOC: base64.b64decode(answer["cluster"])},
        )
        if not data.config.exists():
            staged.write_config(peers=[peer])
    return identity
