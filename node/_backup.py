"""Backups: every document a node holds in one checked file, and a new cluster restored from it.

A backup is a zip: `manifest.json` (format, when, which node and cluster, and per document
its file, size, SHA-256 and number of events) and one `docs/<document>.ydoc` per document,
the document's whole state as one Yjs update. It holds no private key: password, PIN and
token hashes are in the cluster document, so keep the file as carefully as the node.

A restore never writes into an existing node. It checks the whole file first, then creates
a new node that starts a new cluster (a new CA: the node certificates of the backup's
cluster are not in the file) holding every document of the backup. The former members are
marked revoked ("restored from backup"); users, tokens and settings carry over, so people
and the platform log in as before. Other PCs join the new cluster with `sterimesh invite`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pycrdt import Doc

import crdt_model as cm
import sync

from ._cluster import next_code
from ._layout import DataDir, write_private
from ._node import VERSION, Node, NodeError, creating_store, cut_move_leftovers, found_cluster
from ._user_records import user_records

_LOGGER = logging.getLogger(__name__)

FORMAT = "sterimesh-backup/1"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_DOC_BYTES = 2 * 1024 * 1024 * 1024

MAX_RATIO = 100
"""A document packs into at least 1/MAX_RATIO of its size (a few times smaller, in practice)..."""
MAX_RATIO_FREE_BYTES = 16 * 1024 * 1024
"""...once larger than this."""
_UNREADABLE = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, OSError, EOFError)
"""What reading a damaged zip member raises: a flipped bit, an encrypted or unknown method."""

Progress = Callable[[str, int, int], None]
"""progress(what, done, total): called as documents are written, checked or restored."""


class BackupError(NodeError):
    """A backup that cannot be made, read or restored; says what and where."""


@dataclass(frozen=True)
class Checked:
    """A backup file that passed every check: its manifest and documents."""

    manifest: dict[str, Any]
    docs: dict[str, bytes]

    def summary(self) -> dict[str, Any]:
        """What the backup holds, for people and scripts."""
        listed = self.manifest["documents"]
        days = [n for n in listed if n.startswith(cm.EVENTS_PREFIX)]
        cluster: Doc[Any] = Doc()
        cluster.apply_update(self.docs[cm.CLUSTER_DOC])
        return {
            "format": FORMAT,
            "created_at": self.manifest["created_at"],
            "node": self.manifest["node"],
            "documents": len(listed),
            "events": sum(int(listed[n].get("events", 0)) for n in days),
            "days": len(days),
            "first_day": min(days)[len(cm.EVENTS_PREFIX) :] if days else None,
            "last_day": max(days)[len(cm.EVENTS_PREFIX) :] if days else None,
            "references": sum(1 for n in listed if n.startswith(cm.REF_PREFIX)),
            "members": len(cm.cluster_items(cluster, "members")),
            "users": len(user_records(cluster)),
            "bytes": sum(int(entry["bytes"]) for entry in listed.values()),
        }


def snapshot(node: Node) -> dict[str, bytes]:
    """Every document the node serves, each as one update (call on the node's event loop)."""
    return {
        name: doc.get_update()
        for name, doc in sorted(node.docs.items())
        if not node.is_retired(name)
    }


def write_backup(
    node_info: Mapping[str, Any], docs: Mapping[str, bytes], progress: Progress | None = None
) -> bytes:
    """The backup file's bytes for these documents (CPU-bound: run it off the event loop)."""
    if cm.CLUSTER_DOC not in docs:
        raise BackupError("the node holds no cluster document: nothing to back up")
    listed: dict[str, dict[str, Any]] = {}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for i, (name, data) in enumerate(sorted(docs.items()), 1):
            entry: dict[str, Any] = {
                "file": _file_of(name),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            if name.startswith(cm.EVENTS_PREFIX):
                doc: Doc[Any] = Doc()
                doc.apply_update(data)
                entry["events"] = len(cm.events_map(doc))
                entry["acks"] = len(cm.acks_map(doc))
            zf.writestr(entry["file"], data)
            listed[name] = entry
            if progress is not None:
                progress("written", i, len(docs))
        manifest = {
            "format": FORMAT,
            "software": VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "node": dict(node_info),
            "documents": listed,
        }
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False))
    return out.getvalue()


def node_info(node: Node) -> dict[str, Any]:
    """Who made a backup."""
    return {
        "node_id": node.node_id,
        "code": node.code,
        "name": node.name,
        "zone": node.zone,
        "cluster_id": node.cluster_id,
    }


def write_file(path: Path, data: bytes, check: Callable[[Path], object] | None = None) -> None:
    """Write a backup file whole or not at all (a temporary file renamed), readable by its
    owner; `check` reads the temporary file back first (a file of that name is replaced only
    by one that passed)."""
    if path.is_dir():
        raise BackupError(f"{path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} does not exist")
    try:
        write_private(path, data, check)
    except OSError as err:
        raise BackupError(f"cannot write {path}: {err.strerror or err}") from err


FAILURE_REASONS = (
    "folder_missing",
    "not_mounted",
    "no_space",
    "no_permission",
    "read_only",
    "damaged",
    "failed",
)
"""Why a scheduled backup failed, in words a page can translate (`backup.error.<reason>`)."""

_ERRNO_REASONS = {
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "no_space",
    errno.EACCES: "no_permission",
    errno.EPERM: "no_permission",
    errno.EROFS: "read_only",
    errno.ENOENT: "folder_missing",
}


class NotMounted(BackupError):
    """The share a scheduled backup needs is not mounted."""


def failure_reason(err: BaseException, folder: Path, *, checking: bool = False) -> str:
    """One of FAILURE_REASONS for a failed backup into `folder` (`checking`: the written
    file failed its check)."""
    if isinstance(err, NotMounted):
        return "not_mounted"
    if not folder.is_dir():
        return "folder_missing"
    cause = err if isinstance(err, OSError) else err.__cause__
    if isinstance(cause, OSError) and cause.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[cause.errno]
    return "damaged" if checking else "failed"


def check_backup(path: Path, progress: Progress | None = None) -> Checked:
    """Read a backup and check all of it: format, every checksum, every document and event."""
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BackupError(f"{path} does not exist") from None
    except PermissionError:
        raise BackupError(
            f"cannot read {path}: permission denied (a backup is readable by the user that"
            " wrote it: check it as that user, or as root)"
        ) from None
    except (zipfile.BadZipFile, OSError) as err:
        raise BackupError(f"{path} is not a sterimesh backup (not a readable zip: {err})") from None
    with zf:
        manifest = _manifest(zf)
        listed: dict[str, dict[str, Any]] = manifest["documents"]
        files = {entry["file"]: name for name, entry in listed.items()}
        extra = sorted(set(zf.namelist()) - set(files) - {MANIFEST})
        if extra:
            raise BackupError(f"{extra[0][:80]!r} is in the file but not in its manifest")
        docs: dict[str, bytes] = {}
        for i, (name, entry) in enumerate(sorted(listed.items()), 1):
            docs[name] = _read_doc(zf, name, entry)
            if progress is not None:
                progress("checked", i, len(listed))
    if cm.CLUSTER_DOC not in docs:
        raise BackupError("the backup holds no cluster document")
    return Checked(manifest, docs)


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise BackupError("not a sterimesh backup: no manifest.json") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise BackupError("manifest.json is too large")
    try:
        manifest = json.loads(zf.read(info))
    except (*_UNREADABLE, ValueError, RecursionError) as err:
        raise BackupError(f"manifest.json is damaged: {_said(err)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BackupError(f"not a backup of this format ({FORMAT}): {str(found)[:40]!r}")
    listed = manifest.get("documents")
    node = manifest.get("node")
    if not isinstance(listed, dict) or not isinstance(node, dict):
        raise BackupError("manifest.json lacks its documents or node")
    if not isinstance(manifest.get("created_at"), str):
        raise BackupError("manifest.json lacks the time the backup was made")
    for name, entry in listed.items():
        if not cm.is_doc_name(name):
            raise BackupError(f"manifest.json names an unknown document {str(name)[:60]!r}")
        if not isinstance(entry, dict) or entry.get("file") != _file_of(name):
            raise BackupError(f"manifest.json: bad entry for {name}")
        if not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
            raise BackupError(f"manifest.json: {name} lacks its size or checksum")
    return manifest


def _said(err: BaseException) -> str:
    return (str(err) or type(err).__name__)[:120]


def _read_doc(zf: zipfile.ZipFile, name: str, entry: Mapping[str, Any]) -> bytes:
    try:
        info = zf.getinfo(entry["file"])
    except KeyError:
        raise BackupError(f"{name} is in the manifest but not in the file") from None
    if info.file_size != entry["bytes"] or info.file_size > MAX_DOC_BYTES:
        raise BackupError(
            f"{name}: {info.file_size} bytes where the manifest says {entry['bytes']}"
        )
    if info.file_size > MAX_RATIO_FREE_BYTES and info.file_size > MAX_RATIO * info.compress_size:
        raise BackupError(  # read whole, it would take that much memory: a zip bomb
            f"{name}: {info.file_size} bytes packed into {info.compress_size}: not a document"
        )
    try:
        data = zf.read(info)
    except _UNREADABLE as err:
        raise BackupError(f"{name} is damaged: {_said(err)}") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BackupError(f"{name} is damaged: its checksum does not match")
    if cm.lists_a_client_twice(data):  # yrs would make two items of one id: a crash
        raise BackupError(f"{name} is not a readable document")
    doc: Doc[Any] = Doc()
    try:
        doc.apply_update(data)
    except Exception:
        raise BackupError(f"{name} is not a readable document") from None
    if name.startswith(cm.EVENTS_PREFIX):
        _check_events(name, doc, entry)
    try:  # the rules peers apply: what they would refuse from a restored node, refused here
        sync.check_update(None, name, data, max_bytes=MAX_DOC_BYTES)
    except (sync.UpdateRefused, sync.UpdateIncomplete) as err:
        raise BackupError(f"{name} would be refused by the cluster's nodes: {err}") from None
    return data


def _check_events(name: str, doc: Doc[Any], entry: Mapping[str, Any]) -> None:
    events = cm.events_map(doc)
    for key, value in events.items():
        try:
            event = cm.validate_event(cm.decode_map(value), len(value))
        except (cm.CodecError, cm.EventError) as err:
            raise BackupError(f"{name}: event {key[:40]!r} is not valid: {err}") from None
        if event["id"] != key or cm.events_doc_name(cm.Timestamp.parse(event["hlc"])) != name:
            raise BackupError(f"{name}: event {key[:40]!r} is filed under the wrong id or day")
    if entry.get("events") is not None and entry["events"] != len(events):
        raise BackupError(f"{name}: {len(events)} events where the manifest says {entry['events']}")


def restore(
    checked: Checked,
    data: DataDir,
    *,
    name: str | None = None,
    zone: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Create a new node, first of a new cluster, holding every document of a checked backup."""
    source = checked.manifest["node"]
    name = name or str(source.get("name") or "Poste restauré")
    zone = zone or str(source.get("zone") or "office")
    left = cut_move_leftovers(data)  # what a creation cut off left: removed before it begins
    if data.root.is_dir() and any(p.name not in left for p in data.root.iterdir()):
        raise BackupError(f"{data.root} is not empty: restore into a new folder")
    if data.root.exists() and not data.root.is_dir():
        raise BackupError(f"{data.root} is a file: restore into a new folder")
    cluster: Doc[Any] = Doc()
    cluster.apply_update(checked.docs[cm.CLUSTER_DOC])
    at = datetime.now(UTC).isoformat(timespec="seconds")
    former = {
        node_id: entry
        for node_id, entry in cm.cluster_items(cluster, "members").items()
        if not entry.get("revoked")
    }
    code = next_code(_codes(cluster))
    reason = f"restored from the backup of {checked.manifest['created_at']} on a new cluster"

    def retire_former(doc: Doc[Any]) -> None:
        for node_id, entry in former.items():
            revoked = {**entry, "revoked": True, "revoked_at": at, "revoked_by": "restore"}
            cm.cluster_put(doc, "members", node_id, {**revoked, "revoked_reason": reason})

    with creating_store(data, name=name, zone=zone) as (store, staged):  # whole or nothing
        identity = found_cluster(
            staged,
            store,
            name=name,
            zone=zone,
            code=code,
            at=at,
            base=checked.docs,
            meta={"restored_from": {**source, "backup_created_at": checked.manifest["created_at"]}},
            before_join=retire_former,
        )
    if progress is not None:
        progress("restored", len(checked.docs), len(checked.docs))
    return {
        **identity,
        "former_members": sorted(str(e.get("code")) for e in former.values()),
        **checked.summary(),
    }


def _codes(cluster: Doc[Any]) -> set[str]:
    """Every code held by a member (revoked ones too) or promised: the new node takes another."""
    held = {str(m.get("code")) for m in cm.cluster_items(cluster, "members").values()}
    promised = {str(i.get("code")) for i in cm.cluster_items(cluster, "invites").values()}
    return held | promised


def _file_of(name: str) -> str:
    return f"docs/{name}.ydoc"


__all__ = [
    "FORMAT",
    "BackupError",
    "Checked",
    "ScheduledBackups",
    "check_backup",
    "node_info",
    "restore",
    "snapshot",
    "write_backup",
    "write_file",
]


DEFAULT_EVERY_HOURS = 24.0
DEFAULT_KEEP = 14
FIRST_AFTER_S = 60.0
"""The first scheduled backup comes this long after start-up (or sooner if the period is)."""
STALE_TMP_S = 24 * 3600.0
"""A temporary backup file older than this was left by a run cut off (power cut): removed."""


class ScheduledBackups:
    """Backups the node makes itself into a folder, every so often (`[backup]` in node.toml).

    ```toml
    [backup]
    folder = "/mnt/backup/sterimesh"   # best on another machine's share
    every_hours = 6                    # default 24
    keep = 28                          # newest files of this node kept, default 14
    mount = "/mnt/backup"              # optional: fail unless this is mounted (else a share
                                       # not mounted would have the PC's own disk filled)
    ```
    Each run writes, then reads back and checks its file; older files of this node beyond
    `keep` are removed. A failure is logged as an error and shown by `/api/status` and the
    metrics (`sterimesh_backup_*`) until a run succeeds; the node carries on meanwhile.
    """

    def __init__(self, node: Node, config: Mapping[str, Any]) -> None:
        self.node = node
        section = config.get("backup")
        self.folder: Path | None = None
        self.mount: Path | None = None
        self.every_s = DEFAULT_EVERY_HOURS * 3600
        self.keep = DEFAULT_KEEP
        self.runs = self.failures = 0
        self.last_ok_at: float | None = None
        self.last_file: str | None = None
        self.last_bytes: int | None = None
        self.last_error: str | None = None
        """The technical detail of the last failure (English: paths and system messages)."""
        self.last_reason: str | None = None
        """The last failure as one of FAILURE_REASONS (what pages translate)."""
        self.last_error_at: float | None = None
        self._started = time.time()
        self._task: asyncio.Task[None] | None = None
        if section is None:
            return
        if not isinstance(section, dict) or not isinstance(section.get("folder"), str):
            raise BackupError('[backup] in node.toml needs folder = "/path/to/backups"')
        every = section.get("every_hours", DEFAULT_EVERY_HOURS)
        keep = section.get("keep", DEFAULT_KEEP)
        if isinstance(every, bool) or not isinstance(every, int | float) or every <= 0:
            raise BackupError("[backup] every_hours must be a number of hours above 0")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise BackupError("[backup] keep must be a whole number, at least 1")
        mount = section.get("mount")
        if mount is not None and (not isinstance(mount, str) or not mount.startswith("/")):
            raise BackupError('[backup] mount must be an absolute path, e.g. "/mnt/backup"')
        self.folder = Path(section["folder"])
        self.mount = None if mount is None else Path(mount)
        self.every_s = float(every) * 3600
        self.keep = keep

    def start(self) -> None:
        """Begin the schedule (nothing when no folder is configured)."""
        if self.folder is None:
            return
        self._started = time.time()
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self.node.backup_status = self.status

    async def async_stop(self) -> None:
        """End the schedule; a backup being written is abandoned (its temporary file removed)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.node.backup_status = None

    async def _loop(self) -> None:
        await asyncio.sleep(min(FIRST_AFTER_S, self.every_s))
        while True:
            await self.run_once()
            await asyncio.sleep(self.every_s)

    async def run_once(self) -> None:
        """Make, check and prune once; record how it went."""
        assert self.folder is not None
        self.runs += 1
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%SZ")
        path = self.folder / f"{self._prefix()}{stamp}.zip"
        checking = False
        try:
            if self.mount is not None and not await asyncio.to_thread(os.path.ismount, self.mount):
                raise NotMounted(f"{self.mount} is not mounted: no backup written")
            docs, info = snapshot(self.node), node_info(self.node)
            raw = await asyncio.to_thread(write_backup, info, docs)
            await asyncio.to_thread(write_file, path, raw)
            checking = True
            await asyncio.to_thread(check_backup, path)
            checking = False
            await asyncio.to_thread(self._prune, path)
        except Exception as err:  # any failure is recorded and shown; the schedule goes on
            if checking:  # a file that does not read back intact is no backup: never keep it
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            self.failures += 1
            self.last_error = str(err)[:300] or type(err).__name__
            self.last_reason = failure_reason(err, self.folder, checking=checking)
            self.last_error_at = time.time()
            _LOGGER.error("scheduled backup failed: %s", self.last_error)  # noqa: TRY400 (one line)
            return
        self.last_ok_at = time.time()
        self.last_file = path.name
        self.last_bytes = len(raw)
        self.last_error = self.last_reason = None
        _LOGGER.info("backup written to %s (%d bytes, checked)", path, len(raw))

    def _prefix(self) -> str:
        return f"sterimesh-{self.node.code}-"

    def _prune(self, newest: Path) -> None:
        """Keep `newest` (just written and checked) and the `keep - 1` last written before it:
        by modification time, not by the time in the names, which a clock set back puts
        out of order."""
        assert self.folder is not None
        others = [
            p
            for p in self.folder.glob(f"{self._prefix()}*.zip")
            if p != newest and made_by(p) == self.node.node_id
        ]  # another cluster's node of the same code may write to the same share
        others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[max(0, self.keep - 1) :]:
            old.unlink(missing_ok=True)
        for stale in self.folder.glob(f".{self._prefix()}*.zip.tmp"):  # a run cut off
            if time.time() - stale.stat().st_mtime > STALE_TMP_S:
                stale.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """How the schedule goes: ok, pending (no run yet), failing or stale."""
        now = time.time()
        if self.last_error is not None:
            state = "failing"
        elif self.last_ok_at is None:
            late = now - self._started > min(FIRST_AFTER_S, self.every_s) + 3600
            state = "stale" if late else "pending"
        else:
            state = "stale" if now - self.last_ok_at > 2 * self.every_s else "ok"
        return {
            "state": state,
            "folder": str(self.folder),
            "every_hours": self.every_s / 3600,
            "keep": self.keep,
            "runs": self.runs,
            "failures": self.failures,
            "last_ok_at": _iso(self.last_ok_at),
            "last_file": self.last_file,
            "last_bytes": self.last_bytes,
            "last_error": self.last_error,
            "last_error_reason": self.last_reason,
            "last_error_at": _iso(self.last_error_at),
        }


def made_by(path: Path) -> str | None:
    """The node id a backup file says made it (None when it is not a readable backup)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(MANIFEST)
            if info.file_size > MAX_MANIFEST_BYTES:
                return None
            manifest = json.loads(zf.read(info))
    except (*_UNREADABLE, KeyError, ValueError, RecursionError):
        return None
    node = manifest.get("node") if isinstance(manifest, dict) else None
    found = node.get("node_id") if isinstance(node, dict) else None
    return found if isinstance(found, str) else None


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
