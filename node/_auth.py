"""People and integrations: roles, API tokens, passwords, badges and PINs."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from crdt_model import CodedText

ROLES = ("operator", "releaser", "head", "admin", "integration")

PERMISSIONS: dict[str, frozenset[str]] = {
    # "patients": see patient codes (the uses of sets, the planning); others read without
    "operator": frozenset({"read", "record"}),
    "releaser": frozenset({"read", "record", "release", "resolve", "patients"}),
    "head": frozenset({"read", "resolve", "patients"}),
    "admin": frozenset({"read", "admin", "reference", "patients"}),
    "integration": frozenset({"feed", "reference", "patients"}),  # the platform: nothing else
    # a command run on the node's own machine through its control socket
    "local": frozenset(
        {"read", "record", "release", "resolve", "admin", "reference", "feed", "patients"}
    ),
}

EVENT_PERMISSION = {"load.released": "release", "anomaly.resolved": "resolve"}
"""Event types that need more than the `record` permission (and voiding them, the same)."""

TOKEN_PREFIX = "smt_"  # noqa: S105 (a prefix, not a secret)
_LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
_PIN_RE = re.compile(r"^[0-9]{4,8}\Z")
_BADGE_RE = re.compile(r"^[A-Z0-9._:-]{4,64}\Z")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


ADMIN_MESSAGES: dict[str, str] = {
    # people and tokens (this module)
    "unknown_role": "unknown role {role!r}: choose one of {roles}",
    "bad_login": "a login is 1-64 lower-case letters, digits, '.', '_' or '-'",
    "short_password": "a password has at least 8 characters",
    "bad_pin": "a PIN has 4 to 8 digits",
    "bad_badge": "a badge code has 4 to 64 letters, digits, '.', '_', ':' or '-'",
    "bad_token_name": (
        "a token name has 1 to 64 printable characters and does not start with device:"
    ),
    # users' badge, PIN and language (node/_users.py)
    "not_changeable": "only {kept} can be changed here, not {name!r}",
    "not_string_or_null": "{name} must be a string, or null to clear it",
    "bad_language": "a language is one of {languages}",
    "unknown_user": "no user {login!r}",
    "unknown_token": "no API token named {name!r} in use",
    "badge_taken": "this badge is already given to {login}",
    "badge_needs_pin": "a user with a badge needs a PIN",
    # cluster membership (node/_cluster.py)
    "no_code_left": "no node code left",
    "cannot_invite": "this node holds no cluster CA key and cannot invite",
    "revoke_self": "a node cannot revoke itself; revoke it from another node",
    "unknown_member": "no member {node!r}",
}
"""English text of each administration error code, with its parameters (`!r`: quoted)."""


class AdminMessage(CodedText):
    """An administration error: its English text, with a stable `code` and its `params`.

    A str, so that the API, the CLI and logs keep the English text; the admin page shows
    `admin.<code>` from its catalogs. Raised inside AuthError, NodeError and their kin:
    `admin_message(err)` finds it again.
    """

    MESSAGES = ADMIN_MESSAGES


def admin_message(err: BaseException) -> AdminMessage | None:
    """The coded message an exception was raised with, or None (a message without a code)."""
    first = err.args[0] if len(err.args) == 1 else None
    return first if isinstance(first, AdminMessage) else None


class AuthError(ValueError):
    """A bad role, login or password as given by an administrator."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: a person or an integration, with one role."""

    name: str
    role: str

    def can(self, permission: str) -> bool:
        """True when the role grants the permission."""
        return permission in PERMISSIONS.get(self.role, frozenset())


def check_role(role: str) -> str:
    """The role, or AuthError naming the valid ones."""
    if role not in ROLES:
        raise AuthError(AdminMessage("unknown_role", role=role[:20], roles=", ".join(ROLES)))
    return role


def check_login(login: str) -> str:
    """A login: lower-case letters, digits, '.', '_' or '-'."""
    if not _LOGIN_RE.match(login):
        raise AuthError(AdminMessage("bad_login"))
    return login


def check_token_name(name: str) -> str:
    """A token name: 1 to 64 characters, not only spaces (as Node.async_create_token wants),
    not starting with `device:` (what the node's own cycle capture records as)."""
    if (
        not name.strip()
        or len(name) > 64
        or name.strip().startswith("device:")
        or not name.isprintable()  # it signs every event recorded with the token
    ):
        raise AuthError(AdminMessage("bad_token_name"))
    return name


def new_token() -> str:
    """A fresh API token; only its hash is ever stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> dict[str, str]:
    """A salted scrypt hash of a password."""
    if len(password) < 8:
        raise AuthError(AdminMessage("short_password"))
    return _hash_secret(password)


def verify_password(password: str, stored: dict[str, str]) -> bool:
    """True when the password (or PIN) matches its stored hash."""
    salt = bytes.fromhex(stored["salt"])
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest.hex(), stored["hash"])


def hash_pin(pin: str) -> dict[str, str]:
    """A salted scrypt hash of a PIN (4 to 8 digits), checked with verify_password."""
    if not _PIN_RE.match(pin):
        raise AuthError(AdminMessage("bad_pin"))
    return _hash_secret(pin)


def badge_code(raw: str) -> str:
    """A badge code as a reader types it, normalised (trimmed, upper case)."""
    code = raw.strip().upper()
    if not _BADGE_RE.match(code):
        raise AuthError(AdminMessage("bad_badge"))
    return code


@functools.cache
def decoy_hash() -> dict[str, str]:
    """A hash to check against when the login or badge is unknown: every failure costs the same."""
    return hash_pin(f"{secrets.randbelow(10**8):08d}")


def badge_hash(raw: str) -> str:
    """The stored form of a badge code (its SHA-256, like a token's): the code is not kept."""
    return hashlib.sha256(b"badge:" + badge_code(raw).encode()).hexdigest()


def _hash_secret(secret: str) -> dict[str, str]:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return {"alg": "scrypt-16384-8-1", "salt": salt.hex(), "hash": digest.hex()}
