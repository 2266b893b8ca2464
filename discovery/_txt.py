"""The mDNS announcement of a node, sans-I/O: TXT keys, validation, encoding.

TXT record of `_sterimesh._tcp.local.`: `ca` (hex SHA-256 of the cluster CA
certificate), `node` (node id), `code` (node short code), `v` (protocol
version). Anything else in a record is ignored; a record that breaks the
wire format or these rules is refused whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import AnnouncementError, DiscoveryConfigError
from ._sanitize import sanitize

SERVICE_TYPE = "_sterimesh._tcp.local."
KEY_CA = "ca"
KEY_NODE = "node"
KEY_CODE = "code"
KEY_VERSION = "v"
MAX_TXT_BYTES = 1300  # one mDNS packet; ours is about 120 bytes
MAX_TXT_ENTRIES = 16
MAX_VERSION = 9999

_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}\Z")
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
_CODE_RE = re.compile(r"^[A-Z]{1,3}\Z")
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,3}\Z")
_KEY_RE = re.compile(rb"^[\x21-\x3c\x3e-\x7e]{1,9}\Z")  # printable ASCII but '=' (RFC 6763 6.4)


@dataclass(frozen=True, slots=True)
class Announcement:
    """The validated content of a node's TXT record."""

    ca: str
    node_id: str
    code: str
    version: int

    def properties(self) -> dict[str, str]:
        """The TXT properties to register."""
        return {
            KEY_CA: self.ca,
            KEY_NODE: self.node_id,
            KEY_CODE: self.code,
            KEY_VERSION: str(self.version),
        }


def own_announcement(*, ca: str, node_id: str, code: str, version: int) -> Announcement:
    """Our announcement from the configuration; raises DiscoveryConfigError when a field is bad."""
    fingerprint = normalize_fingerprint(ca)
    if not _NODE_ID_RE.match(node_id):
        raise DiscoveryConfigError(
            f"node id {sanitize(node_id)!r}: 1 to 64 letters, digits, '_', '-'"
        )
    if not _CODE_RE.match(code):
        raise DiscoveryConfigError(f"node code {sanitize(code)!r}: 1 to 3 capital letters")
    if isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise DiscoveryConfigError(f"protocol version {version!r}: 1 to {MAX_VERSION}")
    return Announcement(fingerprint, node_id, code, version)


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits ("AB:CD:..." is accepted too)."""
    value = text.strip().replace(":", "").lower()
    if not _FINGERPRINT_RE.match(value):
        raise DiscoveryConfigError(
            f"CA fingerprint {sanitize(text)!r}: expected the SHA-256 as 64 hex digits"
        )
    return value


def parse_txt(raw: bytes) -> dict[str, str]:
    """Split a raw TXT record into key -> value, refusing anything ill-formed.

    Stricter than RFC 6763 on purpose: a key repeated, a key without '=',
    non-UTF-8 values or an entry running past the end refuse the record.
    """
    if len(raw) > MAX_TXT_BYTES:
        raise AnnouncementError(f"TXT record of {len(raw)} bytes")
    entries: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        length = raw[pos]
        entry = raw[pos + 1 : pos + 1 + length]
        if len(entry) != length:
            raise AnnouncementError("TXT entry runs past the end of the record")
        pos += 1 + length
        if not length:
            continue  # an empty string: the "no TXT data" record
        key, sep, value = entry.partition(b"=")
        if not sep or not _KEY_RE.match(key):
            raise AnnouncementError(f"TXT entry {sanitize(entry, 20)!r}: expected key=value")
        name = key.decode("ascii").lower()
        if name in entries:
            raise AnnouncementError(f"TXT key {name!r} appears twice")
        if len(entries) >= MAX_TXT_ENTRIES:
            raise AnnouncementError(f"more than {MAX_TXT_ENTRIES} TXT entries")
        try:
            entries[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise AnnouncementError(f"TXT value of {name!r} is not UTF-8") from None
    return entries


def parse_announcement(raw: bytes) -> Announcement:
    """Validate a peer's raw TXT record; raises AnnouncementError with a loggable reason."""
    entries = parse_txt(raw)
    missing = [k for k in (KEY_CA, KEY_NODE, KEY_CODE, KEY_VERSION) if k not in entries]
    if missing:
        raise AnnouncementError(f"TXT lacks {', '.join(missing)}")
    ca = entries[KEY_CA].lower()
    if not _FINGERPRINT_RE.match(ca):
        raise AnnouncementError(f"ca {sanitize(entries[KEY_CA], 20)!r} is not a SHA-256 in hex")
    if not _NODE_ID_RE.match(entries[KEY_NODE]):
        raise AnnouncementError(f"node {sanitize(entries[KEY_NODE], 20)!r} is not a node id")
    if not _CODE_RE.match(entries[KEY_CODE]):
        raise AnnouncementError(f"code {sanitize(entries[KEY_CODE], 20)!r} is not a node code")
    if not _VERSION_RE.match(entries[KEY_VERSION]):
        raise AnnouncementError(f"v {sanitize(entries[KEY_VERSION], 20)!r} is not a version")
    return Announcement(ca, entries[KEY_NODE], entries[KEY_CODE], int(entries[KEY_VERSION]))
