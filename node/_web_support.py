"""Web UI support: message catalogs, rule messages, signed cookies, login rate limit, SVG bars."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import crdt_model as cm

from ._auth import ADMIN_MESSAGES, admin_message
from ._layout import address_group

LANGUAGES = ("fr", "nl", "en")
DEFAULT_LANGUAGE = "fr"
LOCALES_DIR = Path(__file__).parent / "locales"
SECRET_FILE = "web-secret"  # noqa: S105 (a file name, not a secret)
SESSION_TTL_S = 12 * 3600
LOGIN_FAILURES = 5
"""Failed logins per window of one login (or badge) from one address."""
LOGIN_WINDOW_S = 300.0
KEY_FAILURES = 50
"""Failed logins per window of one login from all addresses together."""
PIN_FAILURES = 10
"""Failed PINs per window of one person from all addresses together (a PIN has as few as
10,000 values: past this, the password still works)."""
PIN_KEY = "pin:"
"""What a person's PIN failures count under (their password failures, under their login)."""
ADDRESS_FAILURES = 30
"""Failed logins one address may make per window on logins nobody holds."""
KNOWN_ADDRESS_FAILURES = 100
"""Failed logins one address may make per window, whatever the logins it tries."""
_MAX_TRACKED = 10000

# -- message catalogs ---------------------------------------------------------------


def load_catalogs(directory: Path = LOCALES_DIR) -> dict[str, dict[str, str]]:
    """Every catalog: language -> {English message id: translation}."""
    return {
        lang: json.loads((directory / f"{lang}.json").read_text(encoding="utf-8"))
        for lang in LANGUAGES
    }


def translator(catalogs: dict[str, dict[str, str]], lang: str) -> Callable[..., str]:
    """`_("message {name}", name=...)` in the language; the message id when untranslated."""
    catalog = catalogs.get(lang, {})

    def gettext(message: str, **values: Any) -> str:
        text = catalog.get(message) or message
        return text.format(**values) if values else text

    return gettext


def accepted_language(header: str | None) -> str | None:
    """The language of LANGUAGES a browser prefers (its Accept-Language header), or None."""
    found = []
    for rank, part in enumerate((header or "").split(",")[:20]):
        tag, _, rest = part.partition(";")
        quality = 1.0
        for param in rest.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and quality > 0:
            found.append((-quality, rank, lang))
    return min(found)[2] if found else None


_TRANSLATED_PARAMS = {"status": "status.", "why": "why.", "step": "event."}
MAX_FIELD_ERRORS = 5
"""Field errors a flash cookie keeps (a cookie holds 4 kB)."""
_MAX_PARAM = 80


def _translated(params: Any, gettext: Callable[..., str]) -> dict[str, str]:
    """Parameters of a message with the codes among them (status, why, step) translated."""
    values = {str(name): str(value) for name, value in dict(params).items()}
    for name, prefix in _TRANSLATED_PARAMS.items():
        if name in values:
            values[name] = gettext(prefix + values[name])
    return values


def problem_item(text: str) -> str | dict[str, Any]:
    """A refusal or warning as a flash cookie keeps it: code and parameters, else the text."""
    if isinstance(text, cm.Problem):
        return {"c": text.code, "p": text.params}
    return text[:300]


def field_errors_item(err: cm.EventError) -> dict[str, Any]:
    """An event's field errors as a flash cookie keeps them: field, code and parameters."""
    return {
        "fe": [
            {"f": e.field[:40], "c": e.code, "p": {k: v[:_MAX_PARAM] for k, v in e.params}}
            if e.code in cm.FIELD_MESSAGES
            else {"f": e.field[:40], "m": e.message[:_MAX_PARAM]}
            for e in err.errors[:MAX_FIELD_ERRORS]
        ]
    }


def admin_item(err: BaseException) -> str | dict[str, Any]:
    """An administration error as a page keeps it: code and parameters, else its text."""
    said = admin_message(err)
    if said is None:
        return str(err)[:200]
    return {"a": said.code, "p": {k: v[:_MAX_PARAM] for k, v in said.params.items()}}


def say_problem(item: Any, gettext: Callable[..., str]) -> str:
    """A refusal, warning, field errors or administration error (as its *_item), translated."""
    if not isinstance(item, dict):
        return str(item)
    if isinstance(item.get("fe"), list):
        return "; ".join(say_field_error(e, gettext) for e in item["fe"] if isinstance(e, dict))
    if "a" in item:
        return say_admin(item.get("a"), item.get("p"), gettext)
    code, params = item.get("c"), item.get("p")
    if not isinstance(code, str) or code not in cm.PROBLEMS or not isinstance(params, dict):
        return ""
    try:
        return gettext("rule." + code, **_translated(params, gettext))
    except (KeyError, IndexError, ValueError):  # a catalog out of step (a test checks them)
        return code


def say_admin(code: Any, params: Any, gettext: Callable[..., str]) -> str:
    """An administration error (a code of ADMIN_MESSAGES), translated; '' when unknown."""
    if not isinstance(code, str) or code not in ADMIN_MESSAGES or not isinstance(params, dict):
        return ""
    values = {str(k): str(v) for k, v in params.items()}
    try:
        return gettext("admin." + code, **values)
    except (KeyError, IndexError, ValueError):  # a catalog out of step (a test checks them)
        pass
    try:
        return ADMIN_MESSAGES[code].format_map(values)
    except (KeyError, IndexError, ValueError):  # parameters missing
        return code


def say_field_error(error: dict[str, Any], gettext: Callable[..., str]) -> str:
    """One field error (an entry of field_errors_item): "Field: what is wrong", translated."""
    name = str(error.get("f", ""))
    label = gettext("field." + name)
    if label == "field." + name:  # a field the catalogs do not name (an unknown one)
        label = name
    said = say_field_message(error.get("c"), error.get("p"), gettext) or str(error.get("m", ""))
    return gettext("field_error", field=label, problem=said)


def say_field_message(code: Any, params: Any, gettext: Callable[..., str]) -> str:
    """What is wrong with a field (a code of cm.FIELD_MESSAGES), translated; '' if unknown."""
    if not isinstance(code, str) or code not in cm.FIELD_MESSAGES or not isinstance(params, dict):
        return ""
    values = {str(k): str(v) for k, v in params.items()}
    if code == "item":  # the fault of one item of a list, whose parameters sit beside
        inner = values.get("problem")
        values["problem"] = "" if inner == "item" else say_field_message(inner, values, gettext)
    try:
        return gettext("check." + code, **values)
    except (KeyError, IndexError, ValueError):
        return cm.FIELD_MESSAGES[code]


def say_anomaly(anomaly: cm.Anomaly, gettext: Callable[..., str]) -> str:
    """An anomaly's message in the page's language, from its rule and parameters."""
    try:
        return gettext("anomaly." + anomaly.rule, **_translated(anomaly.params, gettext))
    except (KeyError, IndexError, ValueError):  # a catalog out of step (a test checks them)
        return anomaly.message_en


def anomalies_by_subject(anomalies: Sequence[cm.Anomaly], name: str) -> dict[str, list[cm.Anomaly]]:
    """Anomalies filed under each value of their parameter `name` (e.g. load: also `other`)."""
    found: dict[str, list[cm.Anomaly]] = {}
    for item in anomalies:
        params = dict(item.params)
        keys = {params.get(name), params.get("other") if name == "load" else None}
        for key in keys - {None, "", "-"}:
            found.setdefault(str(key), []).append(item)
    return found


def local_time(value: str | None, tz: ZoneInfo, fmt: str = "%d/%m %H:%M") -> str:
    """An ISO 8601 time shown in the hospital's time zone; '' when absent or unreadable."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value[:32]
    if moment.tzinfo is None:
        return moment.strftime(fmt)
    return moment.astimezone(tz).strftime(fmt)


# -- sessions -----------------------------------------------------------------------


def node_secret(root: Path) -> bytes:
    """The node's cookie-signing secret, created (mode 0600) in its data directory."""
    path = root / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    return secret


class Signer:
    """HMAC-SHA256 signed, base64url JSON values for cookies."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dumps(self, value: dict[str, Any]) -> str:
        """The signed cookie value."""
        body = base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode())
        return f"{body.decode().rstrip('=')}.{self._mac(body.rstrip(b'='))}"

    def loads(self, raw: str | None) -> dict[str, Any] | None:
        """The value of a cookie signed here, or None (absent, forged, malformed)."""
        if not raw or raw.count(".") != 1 or len(raw) > 4096:
            return None
        body, mac = raw.split(".")
        if not body.isascii() or not same_text(mac, self._mac(body.encode())):
            return None
        try:
            value = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def same_text(expected: str, given: str) -> bool:
    """Constant-time comparison of a secret with what a request sent (any characters)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def new_session(login: str, lang: str, now: float, user: dict[str, Any]) -> dict[str, Any]:
    """A fresh session: user, per-session CSRF token, expiry, language, and the mark of the
    user's record it stays valid for (see session_mark)."""
    return {
        "u": login,
        "c": secrets.token_urlsafe(24),
        "e": int(now) + SESSION_TTL_S,
        "a": int(now),  # last activity: see _web.IDLE_MINUTES
        "l": lang,
        "g": session_mark(user),
    }


def session_mark(user: dict[str, Any]) -> str:
    """Changes when the user's password is replaced or their sessions are ended (logout):
    a session made under another mark is over, on every PC."""
    seed = json.dumps([user.get("password"), user.get("sessions", 0)], sort_keys=True)
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


class LoginLimiter:
    """Failed logins in memory, per LOGIN_WINDOW_S: at most LOGIN_FAILURES per (login,
    address), `total` (KEY_FAILURES, PIN_FAILURES) per login from all addresses, and per
    address ADDRESS_FAILURES on logins nobody holds, KNOWN_ADDRESS_FAILURES on any. An
    address is its IPv4 address or its IPv6 /64. `attempt` counts a try as failed before it
    is checked (tries sent at once cannot outrun the count); `succeeded` takes it back."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._by_key: dict[str, deque[float]] = {}
        self._by_address: dict[str, deque[float]] = {}

    def _recent(self, found: deque[float] | None) -> deque[float]:
        found = found if found is not None else deque()
        limit = self._clock() - LOGIN_WINDOW_S
        while found and found[0] < limit:
            found.popleft()
        return found

    def blocked(
        self, login: str, address: str, *, known: bool = True, total: int = KEY_FAILURES
    ) -> bool:
        """True while the pair, the login or the address has used up its failures; an
        address trying logins nobody holds (`known` False) sooner: spraying many logins is
        stopped, and people sharing an address (a terminal server, a proxy) still log in."""
        group = address_group(address)
        if len(self._recent(self._failures.get((login, group)))) >= LOGIN_FAILURES:
            return True
        if len(self._recent(self._by_key.get(login))) >= total:
            return True
        tried = len(self._recent(self._by_address.get(group)))
        return tried >= KNOWN_ADDRESS_FAILURES or (not known and tried >= ADDRESS_FAILURES)

    def attempt(
        self, login: str, address: str, *, known: bool = True, total: int = KEY_FAILURES
    ) -> bool:
        """Count a try about to be checked, as failed; False (nothing counted) if blocked."""
        if self.blocked(login, address, known=known, total=total):
            return False
        self.failed(login, address)
        return True

    def failed(self, login: str, address: str) -> None:
        """Count one failure."""
        now = self._clock()
        group = address_group(address)
        self._count(self._failures, (login, group), LOGIN_FAILURES, now)
        self._count(self._by_key, login, PIN_FAILURES, now)
        self._count(self._by_address, group, ADDRESS_FAILURES, now)

    def _count(self, table: dict[Any, deque[float]], key: Any, limit: int, now: float) -> None:
        if len(table) > _MAX_TRACKED and key not in table:
            self._bound(table, limit)
        found = table[key] = self._recent(table.get(key))
        found.append(now)

    def _bound(self, table: dict[Any, deque[float]], limit: int) -> None:
        """Forget expired entries, then the stalest that block nothing: never a blocked one
        (keys come from whoever posts the form, to push the others out)."""
        for key in [k for k, found in table.items() if not self._recent(found)]:
            del table[key]
        if len(table) > _MAX_TRACKED:
            harmless = sorted(
                (k for k in table if len(table[k]) < limit), key=lambda k: table[k][-1]
            )
            for key in harmless[: len(table) - _MAX_TRACKED // 2]:
                del table[key]

    def succeeded(self, login: str, address: str) -> None:
        """Forget the failures of a pair that logged in, and take back its try from the
        login's and the address's counts (others' failures stay counted)."""
        group = address_group(address)
        self._failures.pop((login, group), None)
        for table, key in ((self._by_key, login), (self._by_address, group)):
            found = table.get(key)
            if found:
                found.pop()


# -- charts -------------------------------------------------------------------------


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    title: str,
    width: int = 640,
    height: int = 200,
) -> str:
    """Stacked bars as inline SVG; `series` is (name, css class, one value per label)."""
    left, bottom, top = 30, 24, 10
    plot_h = height - bottom - top
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    peak = max([*totals, 1])
    slot = (width - left - 10) / max(len(labels), 1)
    bar_w = max(slot * 0.7, 2)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 20}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 5}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(top + plot_h)
        for name, css, values in series:
            value = values[i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'class="{escape(css)}"><title>{escape(label)} {escape(name)}: {value}</title></rect>'
            )
        if totals[i]:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 2:.1f}" class="val" '
                f'text-anchor="middle">{totals[i]}</text>'
            )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    legend_x = left
    for name, css, _ in series:
        parts.append(
            f'<rect x="{legend_x}" y="{height + 6}" width="12" height="12" class="{escape(css)}"/>'
            f'<text x="{legend_x + 16}" y="{height + 16}" class="tick">{escape(name)}</text>'
        )
        legend_x += 16 + 9 * len(name) + 20
    parts.append("</svg>")
    return "".join(parts)


CHAR_W = 7.5
"""Width kept for one character of a chart label (11 px system font, capitals included)."""
ROW_H = 16
MAX_LABEL = 18
"""Characters of a row label; a longer one is cut with '…' (the row's tooltip says it whole)."""
_LABEL_TAIL = 8


def short_label(label: str) -> str:
    """A chart label of at most MAX_LABEL characters, cut in the middle when longer."""
    # machine names tend to differ at their end: AUTOCLAVE-BLOC-OP-01, AUTOCLAVE-BLOC-OP-02
    if len(label) <= MAX_LABEL:
        return label
    return label[: MAX_LABEL - 1 - _LABEL_TAIL] + "…" + label[-_LABEL_TAIL:]


def row_chart(
    rows: Sequence[tuple[str, str, int]],
    legend: Sequence[tuple[str, str]] = (),
    *,
    title: str,
    width: int = 420,
) -> str:
    """Horizontal bars as inline SVG, one row per (label, css class, value), legend (name, css).

    Each label has its own row, so forty machines stay as readable as two.
    """
    shown = [short_label(label) for label, _, _ in rows]
    label_right = CHAR_W * max([len(s) for s in shown] + [1]) + 4
    bar_x = label_right + 6
    bar_span = width - bar_x - 34  # room for the value after the longest bar
    peak = max([value for _, _, value in rows] + [1])
    top = 4
    legend_y = top + ROW_H * len(rows) + 6
    height = legend_y + (16 if legend else 0)
    parts = [
        f'<svg class="chart rows" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{bar_x:.1f}" y1="{top}" x2="{bar_x:.1f}" y2="{legend_y - 4}" class="axis"/>',
    ]
    for i, ((label, css, value), short) in enumerate(zip(rows, shown, strict=True)):
        y = top + i * ROW_H
        bar_w = bar_span * value / peak
        parts.append(
            f'<g class="row"><title>{escape(label)}: {value}</title>'
            f'<text x="{label_right:.1f}" y="{y + 12}" class="tick" '
            f'text-anchor="end">{escape(short)}</text>'
            f'<rect x="{bar_x:.1f}" y="{y + 3}" width="{bar_w:.1f}" height="{ROW_H - 5}" '
            f'class="{escape(css)}"/>'
            f'<text x="{bar_x + bar_w + 4:.1f}" y="{y + 12}" class="val">{value}</text></g>'
        )
    legend_x = bar_x
    for name, css in legend:
        parts.append(
            f'<rect x="{legend_x:.1f}" y="{legend_y}" width="12" height="12" class="{escape(css)}"/>'
            f'<text x="{legend_x + 16:.1f}" y="{legend_y + 10}" class="tick">{escape(name)}</text>'
        )
        legend_x += 16 + CHAR_W * len(name) + 16
    parts.append("</svg>")
    return "".join(parts)
