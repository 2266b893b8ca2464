"""Read and check an export bundle of reference data (a folder or a .zip), all or nothing.

Rules, beyond DESIGN.md ("Export bundle"); any breach raises BundleError(file, line, reason):

- Container: a folder, or a zip whose entries are all relative, without ``..``, unencrypted,
  at most MAX_ZIP_ENTRIES; manifest.json at the top or inside one top folder. Each file at most
  MAX_FILE_BYTES, the whole at most MAX_BUNDLE_BYTES, a file at most MAX_ROWS rows.
- manifest.json: a UTF-8 JSON object with exactly format ("xline-export/1"), export_id
  (``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``), exported_at (ISO 8601 with a time; kept normalised
  by ``datetime.isoformat``), site (non-empty text) and files; files names exactly the nine
  FILES, each with exactly sha256 (64 hex digits) and rows (a whole number); no key given
  twice. Files in the container that the manifest does not name are ignored.
- CSV: bytes are UTF-8 when valid (a BOM is dropped), else Windows-1252; a NUL byte, UTF-16,
  a byte undefined in Windows-1252, or a byte that is not UTF-8 after UTF-8 letters (a file
  saved in two encodings) is refused. The separator is the most frequent of
  ``;``, tab, ``,`` in the header line (ties in that order). Quoting is strict. Records whose
  fields are all blank are skipped and not counted; every other record has the header's
  field count. Header names match case-insensitively after strip; extra columns are dropped.
- Values are stripped; CRLF inside a value becomes LF. Empty optional text stays "", empty
  optional dates, timestamps and GTINs become None. Dates: dd-mm-yyyy, dd/mm/yyyy, dd.mm.yyyy or
  yyyy-mm-dd, years 1900-2199, to yyyy-mm-dd. Times: HH:MM, HH:MM:SS, 8h00 or 8h, to HH:MM.
  Whole numbers: ASCII digits, at most 9; qty and line >= 0; shelf_life_days 1..3650.
  Timestamps: ISO 8601 with a time, or dd-mm-yyyy HH:MM[:SS]; to ``isoformat`` (an offset
  is kept when given). Codes (keys and references) hold no control or invisible character
  (a zero-width space, a BOM) and at most 100 characters. Zone: sale/propre/sterile in any case, with or without accent. Sex: M, F,
  X or empty. item_kind: set or instrument in any case. GTIN: 8, 12, 13 or 14 digits with
  a valid GS1 check digit, left-padded to 14.
- Required (non-empty): set type code, name, shelf_life_days; instance, type_code; content
  type_code, line, item_type, qty, description; udi; endoscope serial, type; procedure
  type_code, zone, step_code; profile_code, item_kind, item_code, qty; planning date, room,
  start. All other columns may be empty.
- Unique: set type code, set instance, instrument udi, endoscope serial, set content
  (type_code, line). References: set_instances and set_contents type_code -> set_types;
  instruments set_instance (if set) -> set_instances; profiles item_code of kind set ->
  set_types; or_planning profile_code (if set) -> profiles. procedures type_code (it may name
  an instrument) and endo_planning endoscope_type (a shortage is not an export fault) are not
  checked against other files.
- Patient columns (patient_code, patient_name, birth_date, sex) are validated but never
  quoted in an error; or_planning keeps only patient_code. Other values are quoted cut to
  40 characters without control characters.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

_LOGGER = logging.getLogger(__name__)

FORMAT = "xline-export/1"
MANIFEST = "manifest.json"
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_ROWS = 2_000_000
MAX_ZIP_ENTRIES = 1000
PROGRESS_EVERY = 1000

Progress = Callable[[str, int, int], None]


class BundleError(Exception):
    """A refused bundle: file, line (1-based, header = 1; None if not line-specific), reason."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        super().__init__(file, line, reason)
        self.file = file
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file} line {self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Bundle:
    """A checked export: its identity, the manifest as read and the normalised tables."""

    export_id: str
    exported_at: str
    site: str
    manifest: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]


def read_bundle(path: Path, progress: Progress | None = None) -> Bundle:
    """Read and check a bundle folder or .zip whole; raise BundleError on the first fault."""
    path = Path(path)
    if path.is_dir():
        return _read(_Folder(path), progress)
    if not path.is_file():
        raise BundleError(_show_name(path.name), None, "no such folder or zip file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(_show_name(path.name), None, f"not a folder or zip file: {exc}") from None
    with archive:
        return _read(_Zip(archive, _show_name(path.name)), progress)


# -- values ---------------------------------------------------------------------


class _Bad(Exception):
    """A bad value: the reason and the value (quoted unless the column holds patient data)."""

    def __init__(self, reason: str, value: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_INT = re.compile(r"[+-]?[0-9]{1,9}", re.ASCII)
_DATE_ISO = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})", re.ASCII)
_DATE_DMY = re.compile(r"([0-9]{1,2})([-/.])([0-9]{1,2})\2([0-9]{4})", re.ASCII)
_TIME = re.compile(r"([0-9]{1,2})(?::([0-9]{2})(?::([0-9]{2}))?|[hH]([0-9]{2})?)", re.ASCII)
_TS_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}", re.ASCII)
_TS_DMY = re.compile(
    r"([0-9]{1,2})([-/.])([0-9]{1,2})\2([0-9]{4})[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EXPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_ZONES = {"sale": "sale", "propre": "propre", "sterile": "sterile"}
_SEXES = {"M": "M", "F": "F", "X": "X"}
_KINDS = {"set": "set", "instrument": "instrument"}


def _text(value: str) -> str:
    return value.replace("\r\n", "\n") if "\r" in value else value


def _code(value: str) -> str:
    if len(value) > 100:
        raise _Bad("longer than 100 characters", value)
    if _CONTROL.search(value):
        raise _Bad("holds a control character", value)
    invisible = next((c for c in value if _invisible(c)), None)
    if invisible is not None:  # a second code that looks the same as the first
        raise _Bad(f"holds an invisible character (U+{ord(invisible):04X})", value)
    return value


def _invisible(char: str) -> bool:
    """A character that shows nothing: a format character, a line or paragraph separator,
    or one of Unicode's default-ignorable code points (variation selectors, fillers)."""
    code = ord(char)
    return unicodedata.category(char) in ("Cf", "Zl", "Zp") or any(
        low <= code <= high for low, high in _IGNORABLE
    )


_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip
"""Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt)."""


def _whole(minimum: int, maximum: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        if not _INT.fullmatch(value):
            raise _Bad("not a whole number", value)
        number = int(value)
        if number < minimum:
            raise _Bad("must not be negative" if number < 0 else f"below {minimum}", value)
        if number > maximum:
            raise _Bad(f"above {maximum}", value)
        return number

    return convert


@functools.lru_cache(maxsize=8192)
def _date(value: str) -> str:
    match = _DATE_ISO.fullmatch(value)
    if match:
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    else:
        match = _DATE_DMY.fullmatch(value)
        if not match:
            raise _Bad("not a date (dd-mm-yyyy or yyyy-mm-dd)", value)
        year, month, day = int(match[4]), int(match[3]), int(match[1])
    if not 1900 <= year <= 2199:
        raise _Bad("year out of range", value)
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        raise _Bad("no such date", value) from None


@functools.lru_cache(maxsize=4096)
def _time(value: str) -> str:
    match = _TIME.fullmatch(value)
    if not match:
        raise _Bad("not a time (HH:MM)", value)
    hour = int(match[1])
    minute = int(match[2] or match[4] or 0)
    second = int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise _Bad("no such time", value)
    return f"{hour:02d}:{minute:02d}"


def _timestamp(value: str) -> str:
    match = _TS_DMY.fullmatch(value)
    try:
        if match:
            y, mo, d, h, mi, sec = (int(match[i] or 0) for i in (4, 3, 1, 5, 6, 7))
            moment = datetime(y, mo, d, h, mi, sec)
        elif _TS_ISO.match(value):
            moment = datetime.fromisoformat(value)
        else:
            raise _Bad("not a timestamp (ISO 8601 with a time)", value)
    except ValueError:
        raise _Bad("no such date or time", value) from None
    return moment.isoformat()


def _fold(value: str) -> str:
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return plain.casefold()


def _enum(choices: dict[str, str], folder: Callable[[str], str]) -> Callable[[str], str]:
    names = "/".join(dict.fromkeys(choices.values()))

    def convert(value: str) -> str:
        try:
            return choices[folder(value)]
        except KeyError:
            raise _Bad(f"not one of {names}", value) from None

    return convert


def _gs1_check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit of a digit string (the GTIN without its last digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


@functools.lru_cache(maxsize=65536)
def _gtin(value: str) -> str:
    if not _DIGITS.fullmatch(value) or len(value) not in (8, 12, 13, 14):
        raise _Bad("not a GTIN (8, 12, 13 or 14 digits)", value)
    gtin = value.zfill(14)
    if _gs1_check_digit(gtin[:13]) != gtin[13]:
        raise _Bad("bad GS1 check digit", value)
    return gtin


# -- files and columns ------------------------------------------------------------


class _Col(NamedTuple):
    name: str
    convert: Callable[[str], Any]
    required: bool = False
    empty: Any = ""
    patient: bool = False
    keep: bool = True


def _req(name: str, convert: Callable[[str], Any] = _text) -> _Col:
    return _Col(name, convert, required=True)


def _opt(name: str, convert: Callable[[str], Any] = _text) -> _Col:
    return _Col(name, convert, empty="" if convert in (_text, _code) else None)


_QTY = _whole(0, 999_999_999)
_ZONE = _enum(_ZONES, lambda v: _fold(v).strip())
_SEX = _enum(_SEXES, str.upper)
_KIND = _enum(_KINDS, str.casefold)
_PATIENT_CODE = _Col("patient_code", _code, patient=True)

# fmt: off
_SPECS: dict[str, tuple[_Col, ...]] = {
    "set_types.csv": (
        _req("code", _code), _req("name"), _opt("department"), _opt("packaging"),
        _opt("wash_program"), _opt("steri_program"), _req("shelf_life_days", _whole(1, 3650)),
    ),
    "set_instances.csv": (_req("instance", _code), _req("type_code", _code), _opt("location")),
    "set_contents.csv": (
        _req("type_code", _code), _req("line", _QTY), _req("item_type"), _req("qty", _QTY),
        _req("description"), _opt("ref", _code),
    ),
    "instruments.csv": (
        _req("udi", _code), _opt("gtin", _gtin), _opt("serial", _code), _opt("ref", _code),
        _opt("description"), _opt("set_instance", _code),
    ),
    "endoscopes.csv": (
        _req("serial", _code), _opt("model"), _req("type"), _opt("state"), _opt("storage"),
        _opt("last_reprocessed_at", _timestamp),
    ),
    "procedures.csv": (
        _req("type_code", _code), _req("zone", _ZONE), _req("step_code", _code), _opt("label"),
        _opt("wash_program"), _opt("steri_program"),
    ),
    "profiles.csv": (
        _req("profile_code", _code), _opt("procedure"), _opt("surgeon"),
        _req("item_kind", _KIND), _req("item_code", _code), _req("qty", _QTY),
    ),
    "or_planning.csv": (
        _req("date", _date), _req("room"), _req("start", _time), _PATIENT_CODE,
        _Col("patient_name", _text, patient=True, keep=False),
        _Col("birth_date", _date, empty=None, patient=True, keep=False),
        _Col("sex", _SEX, patient=True, keep=False),
        _opt("admission"), _opt("anesthesia"), _opt("surgeon"), _opt("procedure"),
        _opt("profile_code", _code),
        # free text beside a patient (care notes, a name typed in): read, never kept
        _Col("notes", _text, keep=False),
    ),
    "endo_planning.csv": (
        _req("date", _date), _req("room"), _req("start", _time), _PATIENT_CODE,
        _opt("procedure"), _opt("endoscope_type"),
    ),
}
# fmt: on

FILES: dict[str, tuple[str, ...]] = {
    name: tuple(col.name for col in cols) for name, cols in _SPECS.items()
}

_BY_GS1 = ("gtin", "serial")
_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "set_types.csv": (("code",),),
    "set_instances.csv": (("instance",),),
    "set_contents.csv": (("type_code", "line"),),
    "instruments.csv": (("udi",), _BY_GS1),
    "endoscopes.csv": (("serial",),),
    # a line twice would book its sets twice (readiness) or double what a profile needs
    "profiles.csv": (("profile_code", "surgeon", "item_kind", "item_code"),),
    "or_planning.csv": (("date", "room", "start", "patient_code"),),
    "endo_planning.csv": (("date", "room", "start", "patient_code"),),
}
"""Columns whose values no two rows may share (a key with an empty value aside); a patient
code counts, and is never shown in the error."""


class _Ref(NamedTuple):
    column: str
    target: str
    target_column: str
    when: tuple[str, str] | None = None


_REFS: dict[str, tuple[_Ref, ...]] = {
    "set_instances.csv": (_Ref("type_code", "set_types.csv", "code"),),
    "set_contents.csv": (_Ref("type_code", "set_types.csv", "code"),),
    "instruments.csv": (_Ref("set_instance", "set_instances.csv", "instance"),),
    "profiles.csv": (_Ref("item_code", "set_types.csv", "code", ("item_kind", "set")),),
    "or_planning.csv": (_Ref("profile_code", "profiles.csv", "profile_code"),),
}


# -- containers -------------------------------------------------------------------


class _Source(Protocol):
    def read(self, name: str, limit: int) -> bytes | None: ...


class _Folder:
    def __init__(self, root: Path) -> None:
        self._root = root

    def read(self, name: str, limit: int) -> bytes | None:
        path = self._root / name
        if not path.is_file():
            return None
        if path.stat().st_size > limit:
            raise BundleError(name, None, f"file larger than {limit} bytes")
        return path.read_bytes()


class _Zip:
    def __init__(self, archive: zipfile.ZipFile, label: str) -> None:
        self._archive = archive
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise BundleError(label, None, f"more than {MAX_ZIP_ENTRIES} entries in the zip")
        self._entries: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename.replace("\\", "/")  # zips made on Windows may use backslashes
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or re.match(r"[A-Za-z]:", name):
                raise BundleError(
                    _show_name(info.filename), None, "unsafe path in zip ('..' or absolute)"
                )
            if name in self._entries:
                raise BundleError(_show_name(name), None, "duplicate entry in zip")
            if not info.is_dir():
                self._entries[name] = info
        self._prefix = ""
        if MANIFEST not in self._entries:
            nested = [n for n in self._entries if n.count("/") == 1 and n.endswith("/" + MANIFEST)]
            if len(nested) == 1:
                self._prefix = nested[0][: -len(MANIFEST)]

    def read(self, name: str, limit: int) -> bytes | None:
        info = self._entries.get(self._prefix + name)
        if info is None:
            return None
        if info.file_size > limit:
            raise BundleError(name, None, f"file larger than {limit} bytes")
        try:
            with self._archive.open(info) as member:
                data = member.read(limit + 1)
        except (
            zipfile.BadZipFile,
            zlib.error,
            RuntimeError,
            NotImplementedError,
            OSError,
            EOFError,
        ) as exc:
            raise BundleError(name, None, f"unreadable zip entry: {_cut(str(exc))}") from None
        if len(data) > limit:
            raise BundleError(name, None, f"file larger than {limit} bytes")
        return data


# -- reading ----------------------------------------------------------------------


def _read(source: _Source, progress: Progress | None) -> Bundle:
    manifest, exported_at, rows = _read_manifest(source)
    raw: dict[str, bytes] = {}
    total = 0
    for name in FILES:
        data = source.read(name, MAX_FILE_BYTES)
        if data is None:
            raise BundleError(name, None, "listed in the manifest but missing from the bundle")
        total += len(data)
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(name, None, f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
        expected = manifest["files"][name]["sha256"].lower()
        if hashlib.sha256(data).hexdigest() != expected:
            raise BundleError(name, None, "sha256 does not match the manifest")
        raw[name] = data
    tables: dict[str, list[dict[str, Any]]] = {}
    for name in FILES:
        parsed = _parse(name, raw.pop(name), rows[name], tables, progress)
        tables[name.removesuffix(".csv")] = parsed
    _LOGGER.info(
        "read bundle %s: %d rows", manifest["export_id"], sum(len(t) for t in tables.values())
    )
    return Bundle(manifest["export_id"], exported_at, manifest["site"], manifest, tables)


def _read_manifest(source: _Source) -> tuple[dict[str, Any], str, dict[str, int]]:
    data = source.read(MANIFEST, MAX_MANIFEST_BYTES)
    if data is None:
        raise BundleError(MANIFEST, None, "missing manifest.json")
    try:
        manifest = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise BundleError(MANIFEST, None, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BundleError(MANIFEST, exc.lineno, f"not valid JSON: {exc.msg}") from None
    if not isinstance(manifest, dict):
        raise BundleError(MANIFEST, None, "not a JSON object")
    fields = ("format", "export_id", "exported_at", "site", "files")
    for field in fields:
        if field not in manifest:
            raise BundleError(MANIFEST, None, f"missing field {field!r}")
    for field in manifest:
        if field not in fields:
            raise BundleError(MANIFEST, None, f"unknown field {_show(str(field))}")
    if manifest["format"] != FORMAT:
        raise BundleError(
            MANIFEST, None, f"format {_show(str(manifest['format']))} is not {FORMAT}"
        )
    export_id = manifest["export_id"]
    if not isinstance(export_id, str) or not _EXPORT_ID.fullmatch(export_id):
        raise BundleError(MANIFEST, None, f"export_id: not a usable id: {_show(str(export_id))}")
    site = manifest["site"]
    if not isinstance(site, str) or not site.strip():
        raise BundleError(MANIFEST, None, "site: required text")
    exported_at = _exported_at(manifest["exported_at"])
    files = manifest["files"]
    if not isinstance(files, dict):
        raise BundleError(MANIFEST, None, "files: not a JSON object")
    for name in FILES:
        if name not in files:
            raise BundleError(MANIFEST, None, f"missing file {name}")
    rows: dict[str, int] = {}
    for name, entry in files.items():
        if name not in FILES:
            raise BundleError(MANIFEST, None, f"unknown file {_show(str(name))}")
        if not isinstance(entry, dict) or set(entry) != {"sha256", "rows"}:
            raise BundleError(MANIFEST, None, f"{name}: needs exactly sha256 and rows")
        if not isinstance(entry["sha256"], str) or not _SHA256.fullmatch(entry["sha256"]):
            raise BundleError(MANIFEST, None, f"{name}: sha256 is not 64 hex digits")
        count = entry["rows"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BundleError(MANIFEST, None, f"{name}: rows is not a whole number")
        if count > MAX_ROWS:
            raise BundleError(MANIFEST, None, f"{name}: {count} rows, over the limit of {MAX_ROWS}")
        rows[name] = count
    return manifest, exported_at, rows


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BundleError(MANIFEST, None, f"{_cut(key)!r} is given twice")
        seen[key] = value
    return seen


def _exported_at(value: Any) -> str:
    if not isinstance(value, str) or not _TS_ISO.match(value):
        raise BundleError(MANIFEST, None, "exported_at: not an ISO 8601 date and time")
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise BundleError(MANIFEST, None, "exported_at: not an ISO 8601 date and time") from None


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
"""A multi-byte UTF-8 character (in Windows-1252 text, a rare pair such as Ã©)."""


def _accidental(char: str) -> bool:
    """True for a character that UTF-8 gives for two Windows-1252 characters side by side
    (a capital with an accent before a no-break space, a degree sign, a guillemet...), and
    that no export of this field holds: C1 controls, IPA, combining marks, scripts other
    than Latin and Greek (micro, ohm and the Greek letters of instrument names stay)."""
    code = ord(char)
    if 0x80 <= code <= 0x9F:
        return True
    if unicodedata.category(char) in ("Cf", "Mn"):
        return False  # invisible: refused as such further on, whatever the encoding
    return 0x250 <= code <= 0x7FF and not 0x391 <= code <= 0x3C9


def _by_accident(text: str) -> bool:
    """True when every character beyond ASCII of text read as UTF-8 is an accidental one
    standing alone: Windows-1252 text valid as UTF-8 by chance. Any other (an é, a word of
    another script, a degree sign) shows the text is UTF-8 indeed."""
    found = False
    for i, char in enumerate(text):
        if ord(char) < 0x80:
            continue
        if not _accidental(char):
            return False
        near = text[max(i - 1, 0) : i] + text[i + 1 : i + 2]
        if any(ord(c) >= 0x80 for c in near):
            return False
        found = True
    return found


def _decode(name: str, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BundleError(name, None, "UTF-16 is not supported: export as UTF-8 or Windows-1252")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BundleError(name, data.count(b"\n", 0, nul) + 1, "NUL byte: not a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        if data.startswith(b"\xef\xbb\xbf"):
            raise BundleError(name, line, "invalid UTF-8 after a UTF-8 BOM") from None
        before = data[: exc.start].decode("utf-8", "replace")
        if _UTF8_SEQUENCE.search(data, 0, exc.start) and not _by_accident(before):
            # accented letters in UTF-8 before it: read as Windows-1252, every one of them
            # would be garbled (Ã©): a file edited in two encodings is refused, not guessed
            raise BundleError(
                name, line, f"byte 0x{data[exc.start]:02x} is not UTF-8, and the lines before are"
            ) from None
    else:
        if data.startswith(b"\xef\xbb\xbf") or not _by_accident(text):
            return text
        # valid UTF-8 only by accident: Windows-1252 text (Ø and a no-break space read
        # as one Arabic letter), unless Windows-1252 cannot read it either
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return text
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        reason = f"undecodable byte 0x{data[exc.start]:02x}: neither UTF-8 nor Windows-1252"
        raise BundleError(name, line, reason) from None


def _sniff(text: str) -> str:
    end = text.find("\n")
    header = text if end < 0 else text[:end]
    return max((";", "\t", ","), key=header.count)


def _parse(
    name: str,
    data: bytes,
    expected: int,
    tables: dict[str, list[dict[str, Any]]],
    progress: Progress | None,
) -> list[dict[str, Any]]:
    text = _decode(name, data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff(text), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise BundleError(name, None, "empty file: no header row") from None
    except csv.Error as exc:
        raise BundleError(name, 1, f"malformed CSV: {exc}") from None
    columns = [h.strip().casefold() for h in header]
    plan: list[tuple[str, int, Callable[[str], Any], bool, Any, bool, bool]] = []
    for col in _SPECS[name]:
        if columns.count(col.name) != 1:
            what = "missing" if col.name not in columns else "duplicate"
            raise BundleError(name, 1, f"{what} column {col.name!r}")
        index = columns.index(col.name)
        plan.append((col.name, index, col.convert, col.required, col.empty, col.patient, col.keep))
    keys: list[tuple[tuple[str, ...], dict[Any, int]]] = [(c, {}) for c in _KEYS.get(name, ())]
    refs = [
        (ref, {row[ref.target_column] for row in tables[ref.target.removesuffix(".csv")]})
        for ref in _REFS.get(name, ())
    ]
    width = len(header)
    rows: list[dict[str, Any]] = []
    line = reader.line_num
    start = line
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if len(fields) != width or not fields[0]:
                if not "".join(fields).strip():
                    continue
                if len(fields) != width:
                    raise BundleError(name, start, f"expected {width} fields, found {len(fields)}")
            row: dict[str, Any] = {}
            for column, index, convert, required, empty, patient, keep in plan:
                value = fields[index].strip()
                if value:
                    try:
                        value = convert(value)
                    except _Bad as bad:
                        shown = "" if patient else f": {_show(bad.value)}"
                        reason = f"{column}: {bad.reason}{shown}"
                        raise BundleError(name, start, reason) from None
                elif required:
                    raise BundleError(name, start, f"{column}: required value is empty")
                else:
                    value = empty
                if keep:
                    row[column] = value
            for key_columns, seen in keys:
                _check_key(name, start, row, key_columns, seen)
            for ref, known in refs:
                value = row[ref.column]
                if (
                    value
                    and value not in known
                    and (not ref.when or row[ref.when[0]] == ref.when[1])
                ):
                    where = f"{ref.target} {ref.target_column}"
                    raise BundleError(name, start, f"{ref.column}: {_show(value)} not in {where}")
            rows.append(row)
            if len(rows) > expected:
                raise BundleError(name, start, f"more rows than the {expected} in the manifest")
            if progress is not None and len(rows) % PROGRESS_EVERY == 0:
                progress(name, len(rows), expected)
    except csv.Error as exc:
        raise BundleError(name, line + 1, f"malformed CSV: {_cut(str(exc))}") from None
    if len(rows) != expected:
        raise BundleError(name, None, f"{len(rows)} rows, the manifest says {expected}")
    if progress is not None and (not rows or len(rows) % PROGRESS_EVERY):
        progress(name, len(rows), expected)
    return rows


def _check_key(
    name: str, line: int, row: dict[str, Any], columns: tuple[str, ...], seen: dict[Any, int]
) -> None:
    key = tuple(row.get(c) for c in columns)
    if columns == _BY_GS1 and not all(key):
        return  # an instrument known by its UDI text alone
    if _PATIENT_CODE.name in columns and not row.get(_PATIENT_CODE.name):
        return  # a planned slot without a patient code yet: nothing tells two apart
    first = seen.setdefault(key, line)
    if first != line:
        shown = " and ".join(
            f"{c} {_show(str(row[c])) if isinstance(row[c], str) else row[c]}"
            for c in columns
            if c != _PATIENT_CODE.name
        )
        same = " for the same patient" if _PATIENT_CODE.name in columns else ""
        raise BundleError(name, line, f"duplicate {shown}{same} (first on line {first})")


def _cut(text: str, limit: int = 40) -> str:
    clean = _CONTROL.sub("", text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _show(value: str) -> str:
    """A value fit for an error message: control characters stripped, cut, quoted."""
    clean = _CONTROL.sub("", value)
    return repr(clean[:40]) + ("..." if len(clean) > 40 else "")


def _show_name(name: str) -> str:
    return _cut(name, 100)
