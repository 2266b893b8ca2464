"""The export-bundle reader: what it accepts, what it refuses and how it says so."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import string
import tempfile
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import _bundle
from node._bundle import FILES, Bundle, BundleError, read_bundle

Rows = list[list[str]]


def gtin(body: str) -> str:
    """A 14-digit GTIN: the 13 digits of `body` and their GS1 check digit (own implementation)."""
    weights = [3 if i % 2 == 0 else 1 for i in range(len(body))]
    total = sum(int(d) * w for d, w in zip(reversed(body), weights, strict=True))
    return body + str((10 - total % 10) % 10)


G1 = gtin("0376012300001")
G2 = gtin("0376012300002")

BASE: dict[str, Rows] = {
    "set_types.csv": [
        ["code", "name", "department", "packaging", "wash_program", "steri_program", "shelf_life_days"],
        ["JDIGGRBA", "JOL-GRANDE BASE DIGESTIVE", "Digestif", "CONTENEUR", "INSTRU 93°C 3MIN NORMAL", "NORMAL 134°", "180"],
        ["JUROTURB", "JOL-RTUV UROLOGIE", "Urologie", "ONE STEP 121 X121", "INSTRU 93°C 3MIN NORMAL", "PRION 134°", "90"],
    ],
    "set_instances.csv": [
        ["instance", "type_code", "location"],
        ["JDIGGRBA#111", "JDIGGRBA", "Jol-Digestive Armoire U"],
        ["JDIGGRBA#112", "JDIGGRBA", "Jol-Digestive Armoire U"],
        ["JUROTURB01", "JUROTURB", ""],
    ],
    "set_contents.csv": [
        ["type_code", "line", "item_type", "qty", "description", "ref"],
        ["JDIGGRBA", "1", "I", "2", "VALVE LERICHE LARGEUR 60MM LONG.275MM", "BT601R"],
        ["JDIGGRBA", "2", "I", "1", "MANCHE BISTOURI NO.4 133MM (BB084R)", "BB084R"],
        ["JUROTURB", "1", "I", "1", "MANCHE BISTOURI NO.4 133MM (BB084R)", "BB084R"],
    ],
    "instruments.csv": [
        ["udi", "gtin", "serial", "ref", "description", "set_instance"],
        [f"01{G1}21A001", G1, "A001", "BT601R", "VALVE LERICHE LARGEUR 60MM LONG.275MM", "JDIGGRBA#111"],
        [f"01{G1}21A002", G1, "A002", "BT601R", "VALVE LERICHE LARGEUR 60MM LONG.275MM", "JDIGGRBA#111"],
        [f"01{G2}21B001", G2, "B001", "BB084R", "MANCHE BISTOURI NO.4 133MM (BB084R)", ""],
    ],
    "endoscopes.csv": [
        ["serial", "model", "type", "state", "storage", "last_reprocessed_at"],
        ["2812345", "GIF-H190", "Gastroscope", "Disponible", "Armoire ASE 1", "2026-11-27T14:03:00+01:00"],
        ["2812346", "CF-HQ190L", "Coloscope", "En réparation", "Atelier", ""],
    ],
    "procedures.csv": [
        ["type_code", "zone", "step_code", "label", "wash_program", "steri_program"],
        ["JDIGGRBA", "Sale", "L", "LAVAGE EN MACHINE", "INSTRU 93°C 3MIN NORMAL", ""],
        ["JDIGGRBA", "Propre", "P", "PROPRETE, FONCTIONNALITE, INTEGRITE", "", ""],
        ["JDIGGRBA", "Stérile", "S", "LIBERATION DE LA CHARGE", "", "NORMAL 134°"],
    ],
    "profiles.csv": [
        ["profile_code", "procedure", "surgeon", "item_kind", "item_code", "qty"],
        ["PDIG001", "Cholécystectomie par coelioscopie", "Dr Lefèvre", "set", "JDIGGRBA", "1"],
        ["PURO001", "TURBT", "", "set", "JUROTURB", "1"],
        ["PURO001", "TURBT", "", "instrument", "BB084R", "2"],
    ],
    "or_planning.csv": [
        ["date", "room", "start", "patient_code", "patient_name", "birth_date", "sex", "admission",
         "anesthesia", "surgeon", "procedure", "profile_code", "notes"],
        ["30-11-2026", "J Salle 3", "08:00", "000501492", "DUPONT Hélène", "29-11-1964", "F", "H",
         "A. Générale", "Dr Lefèvre", "TURBT (résection trans-urétrale d'une tumeur de la vessie)",
         "PURO001", ""],
        ["30-11-2026", "J Salle 3", "10:30", "000501493", "MARTIN Loïc", "02-03-1950", "M", "A",
         "A. Générale", "Dr Lefèvre", "Cholécystectomie par coelioscopie", "PDIG001", ""],
    ],
    "endo_planning.csv": [
        ["date", "room", "start", "patient_code", "procedure", "endoscope_type"],
        ["30-11-2026", "J Endoscopie 1", "08:30", "000501494", "Gastroscopie", "Gastroscope"],
    ],
}  # fmt: skip


def encode(
    rows: Rows,
    *,
    sep: str = ";",
    newline: str = "\n",
    encoding: str = "utf-8",
    quote_all: bool = False,
) -> bytes:
    """CSV bytes in one dialect; encoding "utf-8-sig" writes a BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator=newline)
    if quote_all:
        writer = csv.writer(buffer, delimiter=sep, lineterminator=newline, quoting=csv.QUOTE_ALL)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def build(
    folder: Path,
    *,
    tables: dict[str, Rows] | None = None,
    data: dict[str, bytes] | None = None,
    rehash: bool = True,
    manifest_edit: Callable[[dict[str, Any]], None] | None = None,
    **dialect: Any,
) -> Path:
    """Write a valid bundle folder, with tables or raw file bytes replaced; return it."""
    all_rows = {**BASE, **(tables or {})}
    files = {name: encode(rows, **dialect) for name, rows in all_rows.items()}
    entries = {
        name: {"sha256": hashlib.sha256(raw).hexdigest(), "rows": len(all_rows[name]) - 1}
        for name, raw in files.items()
    }
    for name, raw in (data or {}).items():
        files[name] = raw
        if rehash:
            entries[name]["sha256"] = hashlib.sha256(raw).hexdigest()
    manifest = {
        "format": "xline-export/1",
        "export_id": "XL-20261129-01",
        "exported_at": "2026-11-29T22:00:00+01:00",
        "site": "CH Jolival",
        "files": entries,
    }
    if manifest_edit:
        manifest_edit(manifest)
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
    return folder


def edited(name: str, index: int, **cells: str) -> dict[str, Rows]:
    """The table `name` with row `index` (1 = first data row = line 2) changed."""
    rows = [list(row) for row in BASE[name]]
    for column, value in cells.items():
        rows[index][rows[0].index(column)] = value
    return {name: rows}


def added(name: str, *extra: list[str]) -> dict[str, Rows]:
    """The table `name` with rows appended."""
    return {name: [*BASE[name], *extra]}


def refused(path: Path) -> BundleError:
    with pytest.raises(BundleError) as info:
        read_bundle(path)
    return info.value


def zip_folder(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(folder.iterdir()):
            archive.write(item, prefix + item.name)
    return target


# -- acceptance -------------------------------------------------------------------------


def test_reads_a_valid_bundle_normalised(tmp_path: Path) -> None:
    bundle = read_bundle(build(tmp_path / "b"))
    assert isinstance(bundle, Bundle)
    assert (bundle.export_id, bundle.site) == ("XL-20261129-01", "CH Jolival")
    assert bundle.exported_at == "2026-11-29T22:00:00+01:00"
    assert set(bundle.tables) == {name.removesuffix(".csv") for name in FILES}
    assert bundle.manifest["files"]["set_types.csv"]["rows"] == 2
    assert bundle.tables["set_types"][0] == {
        "code": "JDIGGRBA",
        "name": "JOL-GRANDE BASE DIGESTIVE",
        "department": "Digestif",
        "packaging": "CONTENEUR",
        "wash_program": "INSTRU 93°C 3MIN NORMAL",
        "steri_program": "NORMAL 134°",
        "shelf_life_days": 180,
    }
    assert [r["zone"] for r in bundle.tables["procedures"]] == ["sale", "propre", "sterile"]
    assert bundle.tables["set_contents"][0]["line"] == 1
    assert bundle.tables["set_contents"][0]["qty"] == 2
    assert bundle.tables["endoscopes"][1]["last_reprocessed_at"] is None
    assert bundle.tables["or_planning"][0] == {
        "date": "2026-11-30",
        "room": "J Salle 3",
        "start": "08:00",
        "patient_code": "000501492",
        "admission": "H",
        "anesthesia": "A. Générale",
        "surgeon": "Dr Lefèvre",
        "procedure": "TURBT (résection trans-urétrale d'une tumeur de la vessie)",
        "profile_code": "PURO001",
    }  # notes (free text beside a patient) are read, never kept
    assert bundle.tables["endo_planning"][0]["start"] == "08:30"


def test_files_cover_the_design_columns() -> None:
    assert list(FILES) == list(BASE)
    for name, rows in BASE.items():
        assert FILES[name] == tuple(rows[0])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("sep", [";", "\t", ","])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_accepts_every_dialect(tmp_path: Path, encoding: str, sep: str, newline: str) -> None:
    folder = build(tmp_path / "b", encoding=encoding, sep=sep, newline=newline)
    if encoding == "cp1252":
        assert b"\xe9" in (folder / "procedures.csv").read_bytes()
    bundle = read_bundle(folder)
    assert bundle.tables == read_bundle(build(tmp_path / "plain")).tables
    assert bundle.tables["profiles"][0]["surgeon"] == "Dr Lefèvre"
    assert bundle.tables["endoscopes"][1]["state"] == "En réparation"


def test_quoted_fields_hold_separators_quotes_and_newlines(tmp_path: Path) -> None:
    note = 'Prévoir "kit ancillaire"; confirmer, avec\nle bloc\tvers 7h'
    tables = edited("or_planning.csv", 1, procedure=note)
    for sep in (";", "\t", ","):
        for quote_all in (False, True):
            folder = build(
                tmp_path / f"{sep!r}{quote_all}", tables=tables, sep=sep, quote_all=quote_all
            )
            assert read_bundle(folder).tables["or_planning"][0]["procedure"] == note


def test_crlf_inside_a_quoted_value_becomes_lf(tmp_path: Path) -> None:
    tables = edited("or_planning.csv", 1, procedure="ligne 1\r\nligne 2")
    bundle = read_bundle(build(tmp_path / "b", tables=tables, newline="\r\n"))
    assert bundle.tables["or_planning"][0]["procedure"] == "ligne 1\nligne 2"


@pytest.mark.parametrize(
    ("given_date", "given_time"),
    [
        ("30-11-2026", "08:00"),
        ("30/11/2026", "08:00:00"),
        ("2026-11-30", "8h00"),
        ("30.11.2026", "8:00"),
    ],
)
def test_dates_and_times_normalised(tmp_path: Path, given_date: str, given_time: str) -> None:
    tables = edited(
        "or_planning.csv", 1, date=given_date, start=given_time, birth_date="1964-11-29"
    )
    row = read_bundle(build(tmp_path / "b", tables=tables)).tables["or_planning"][0]
    assert (row["date"], row["start"]) == ("2026-11-30", "08:00")


def test_timestamps_normalised(tmp_path: Path) -> None:
    tables = edited("endoscopes.csv", 1, last_reprocessed_at="27-11-2026 14:03")
    tables["endoscopes.csv"][2][5] = "2026-11-27 06:00Z"
    rows = read_bundle(build(tmp_path / "b", tables=tables)).tables["endoscopes"]
    assert rows[0]["last_reprocessed_at"] == "2026-11-27T14:03:00"
    assert rows[1]["last_reprocessed_at"] == "2026-11-27T06:00:00+00:00"


def test_header_case_order_and_extra_columns(tmp_path: Path) -> None:
    rows = [[*reversed(row), "x"] for row in BASE["set_instances.csv"]]
    rows[0] = [" Location ", "TYPE_CODE", "Instance", "Commentaire"]
    bundle = read_bundle(build(tmp_path / "b", tables={"set_instances.csv": rows}))
    assert bundle.tables["set_instances"][0] == {
        "instance": "JDIGGRBA#111",
        "type_code": "JDIGGRBA",
        "location": "Jol-Digestive Armoire U",
    }


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    raw = encode(BASE["set_types.csv"]).replace(b"\n", b"\n\n", 1) + b";;;;;;\n\n"
    bundle = read_bundle(build(tmp_path / "b", data={"set_types.csv": raw}))
    assert len(bundle.tables["set_types"]) == 2


def test_gtin_left_padded(tmp_path: Path) -> None:
    thirteen, eight = G1[1:], gtin("0000009638507")[6:]
    tables = edited("instruments.csv", 1, gtin=thirteen)
    tables["instruments.csv"][2][1] = eight
    rows = read_bundle(build(tmp_path / "b", tables=tables)).tables["instruments"]
    assert [rows[0]["gtin"], rows[1]["gtin"]] == [G1, eight.zfill(14)]
    assert rows[2]["gtin"] == G2


@pytest.mark.parametrize("prefix", ["", "export-20261129/"])
def test_zip_and_folder_read_alike(tmp_path: Path, prefix: str) -> None:
    folder = build(tmp_path / "b")
    archive = zip_folder(folder, tmp_path / "bundle.zip", prefix)
    assert read_bundle(archive) == read_bundle(folder)


def test_a_zip_made_on_windows_with_backslashes_reads_alike(tmp_path: Path) -> None:
    folder = build(tmp_path / "b")
    archive = tmp_path / "windows.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.iterdir()):
            handle.writestr(zipfile.ZipInfo(f"export-20261129\\{path.name}"), path.read_bytes())
    assert read_bundle(archive) == read_bundle(folder)


def test_progress_reports_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bundle, "PROGRESS_EVERY", 2)
    calls: list[tuple[str, int, int]] = []
    read_bundle(build(tmp_path / "b"), progress=lambda *call: calls.append(call))
    assert ("instruments.csv", 2, 3) in calls
    assert ("instruments.csv", 3, 3) in calls
    assert {name for name, _, _ in calls} == set(FILES)


# -- refusals -----------------------------------------------------------------------------


def test_refuses_checksum_mismatch(tmp_path: Path) -> None:
    raw = encode(BASE["set_types.csv"]).replace(b"180", b"365")
    err = refused(build(tmp_path / "b", data={"set_types.csv": raw}, rehash=False))
    assert (err.file, err.line, err.reason) == (
        "set_types.csv",
        None,
        "sha256 does not match the manifest",
    )


def test_refuses_a_file_missing_from_the_manifest(tmp_path: Path) -> None:
    err = refused(build(tmp_path / "b", manifest_edit=lambda m: m["files"].pop("or_planning.csv")))
    assert (err.file, err.line) == ("manifest.json", None)
    assert str(err) == "manifest.json: missing file or_planning.csv"


def test_refuses_a_listed_file_missing_from_the_bundle(tmp_path: Path) -> None:
    folder = build(tmp_path / "b")
    (folder / "endo_planning.csv").unlink()
    err = refused(folder)
    assert (err.file, err.line) == ("endo_planning.csv", None)
    assert "missing from the bundle" in err.reason


def test_refuses_a_missing_manifest(tmp_path: Path) -> None:
    folder = build(tmp_path / "b")
    (folder / "manifest.json").unlink()
    assert (refused(folder).file, refused(folder).reason) == (
        "manifest.json",
        "missing manifest.json",
    )


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda m: m.update(format="xline-export/2"), "format 'xline-export/2' is not xline-export/1"),
        (lambda m: m.pop("site"), "missing field 'site'"),
        (lambda m: m.update(extra=1), "unknown field 'extra'"),
        (lambda m: m.update(export_id="../x"), "export_id: not a usable id: '../x'"),
        (lambda m: m.update(exported_at="2026-11-29"), "exported_at: not an ISO 8601 date and time"),
        (lambda m: m["files"].update({"x.csv": {}}), "unknown file 'x.csv'"),
        (lambda m: m["files"]["profiles.csv"].update(rows="3"), "profiles.csv: rows is not a whole number"),
        (lambda m: m["files"]["profiles.csv"].update(rows=3_000_000), "profiles.csv: 3000000 rows, over the limit of 2000000"),
        (lambda m: m["files"]["profiles.csv"].update(sha256="zz"), "profiles.csv: sha256 is not 64 hex digits"),
    ],
)  # fmt: skip
def test_refuses_a_bad_manifest(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], reason: str
) -> None:
    err = refused(build(tmp_path / "b", manifest_edit=edit))
    assert (err.file, err.line, err.reason) == ("manifest.json", None, reason)


def test_refuses_manifest_that_is_not_json(tmp_path: Path) -> None:
    folder = build(tmp_path / "b")
    (folder / "manifest.json").write_text('{\n  "format": "xline-export/1",\n  oops\n}')
    err = refused(folder)
    assert (err.file, err.line) == ("manifest.json", 3)
    assert err.reason.startswith("not valid JSON")


def test_refuses_a_utf8_file_of_another_script_with_a_windows_1252_byte(tmp_path: Path) -> None:
    raw = bytearray(
        encode(edited("set_contents.csv", 1, description="Dr Иванов")["set_contents.csv"])
    )
    raw += "JDIGGRBA;9;I;1;Séchage;\n".encode("cp1252")
    err = refused(build(tmp_path / "b", data={"set_contents.csv": bytes(raw)}))
    assert err.reason == "byte 0xe9 is not UTF-8, and the lines before are"


def test_refuses_a_utf8_file_with_a_windows_1252_byte(tmp_path: Path) -> None:
    """Read as Windows-1252 it would pass, every accented letter garbled (93Â°C)."""
    raw = bytearray(encode(BASE["procedures.csv"]))
    assert "°".encode() in raw  # UTF-8 letters early in the file
    raw += "JDIGGRBA;Sale;X;Séchage;;\n".encode("cp1252")  # one line saved by another editor
    err = refused(build(tmp_path / "b", data={"procedures.csv": bytes(raw)}))
    assert (err.file, err.line) == ("procedures.csv", len(BASE["procedures.csv"]) + 1)
    assert err.reason == "byte 0xe9 is not UTF-8, and the lines before are"


def test_windows_1252_that_happens_to_be_valid_utf8_is_read_as_such(tmp_path: Path) -> None:
    """Ø and a no-break space, É and a no-break space, are valid UTF-8 when written in
    Windows-1252 (an Arabic letter, an IPA letter): a file whose only such characters stand
    alone is Windows-1252; Greek letters and words of other scripts are UTF-8 indeed."""
    for field, cp1252_text in [
        ("description", "CANULE ASPIRATION Ø\xa05MM"),
        ("description", "PINCE DEGRÉ\xa0: ÉLEVÉ"),
    ]:
        tables = edited("set_contents.csv", 1, **{field: cp1252_text})
        folder = build(tmp_path / str(len(cp1252_text)), tables=tables, encoding="cp1252")
        assert read_bundle(folder).tables["set_contents"][0][field] == cp1252_text
    for utf8_text in ("CURETTE 5 μm", "Dr Иванов", "N° 5 Ω", "Optique 30˚ stérile"):
        tables = edited("set_contents.csv", 1, description=utf8_text)
        folder = build(tmp_path / f"u{len(utf8_text)}", tables=tables, encoding="utf-8")
        assert read_bundle(folder).tables["set_contents"][0]["description"] == utf8_text


@pytest.mark.parametrize(
    "hidden",
    ["\ufeff", "\u200b", "\u2066", "\u061c", "\u180e", "\ufe0f", "\U000e0041", "\u034f",
     "\u180b", "\u3164", "\uffa0"],
)  # fmt: skip
def test_refuses_a_code_with_an_invisible_character(tmp_path: Path, hidden: str) -> None:
    err = refused(
        build(
            tmp_path / "b",
            tables=added("set_types.csv", [f"{hidden}JDIGLAPA", "Autre", "", "", "", "", "30"]),
        )
    )
    assert err.file == "set_types.csv"
    assert f"invisible character (U+{ord(hidden):04X})" in err.reason


def test_refuses_a_manifest_key_given_twice(tmp_path: Path) -> None:
    folder = build(tmp_path / "b")
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text.replace('"site":', '"site": "X", "site":', 1))
    err = refused(folder)
    assert (err.file, err.reason) == ("manifest.json", "'site' is given twice")


def test_refuses_a_missing_column(tmp_path: Path) -> None:
    rows = [row[:3] + row[4:] for row in BASE["set_contents.csv"]]
    err = refused(build(tmp_path / "b", tables={"set_contents.csv": rows}))
    assert (err.file, err.line, err.reason) == ("set_contents.csv", 1, "missing column 'qty'")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("31-02-2026", "date: no such date: '31-02-2026'"),
        ("2026/11/30", "date: not a date (dd-mm-yyyy or yyyy-mm-dd): '2026/11/30'"),
        ("30-11-26", "date: not a date (dd-mm-yyyy or yyyy-mm-dd): '30-11-26'"),
        ("", "date: required value is empty"),
    ],
)
def test_refuses_a_bad_date(tmp_path: Path, value: str, reason: str) -> None:
    err = refused(build(tmp_path / "b", tables=edited("or_planning.csv", 2, date=value)))
    assert (err.file, err.line, err.reason) == ("or_planning.csv", 3, reason)


def test_refuses_a_bad_time(tmp_path: Path) -> None:
    err = refused(build(tmp_path / "b", tables=edited("endo_planning.csv", 1, start="25:00")))
    assert (err.file, err.line, err.reason) == (
        "endo_planning.csv",
        2,
        "start: no such time: '25:00'",
    )


def test_refuses_a_bad_int(tmp_path: Path) -> None:
    err = refused(build(tmp_path / "b", tables=edited("set_types.csv", 2, shelf_life_days="abc")))
    assert (err.file, err.line) == ("set_types.csv", 3)
    assert str(err) == "set_types.csv line 3: shelf_life_days: not a whole number: 'abc'"


@pytest.mark.parametrize(
    ("name", "cells", "reason"),
    [
        ("set_contents.csv", {"qty": "-1"}, "qty: must not be negative: '-1'"),
        ("set_contents.csv", {"line": "1.5"}, "line: not a whole number: '1.5'"),
        ("set_types.csv", {"shelf_life_days": "0"}, "shelf_life_days: below 1: '0'"),
        ("profiles.csv", {"qty": ""}, "qty: required value is empty"),
        ("procedures.csv", {"zone": "Bureau"}, "zone: not one of sale/propre/sterile: 'Bureau'"),
        ("profiles.csv", {"item_kind": "kit"}, "item_kind: not one of set/instrument: 'kit'"),
        ("set_types.csv", {"code": "JDIG\x07"}, "code: holds a control character: 'JDIG'"),
        ("endoscopes.csv", {"last_reprocessed_at": "hier"}, "last_reprocessed_at: not a timestamp (ISO 8601 with a time): 'hier'"),
    ],
)  # fmt: skip
def test_refuses_a_bad_value(tmp_path: Path, name: str, cells: dict[str, str], reason: str) -> None:
    err = refused(build(tmp_path / "b", tables=edited(name, 1, **cells)))
    assert (err.file, err.line, err.reason) == (name, 2, reason)


def test_quoted_values_are_cut_and_cleaned(tmp_path: Path) -> None:
    value = "\x1b[31m" + "9" * 60
    err = refused(build(tmp_path / "b", tables=edited("set_types.csv", 1, shelf_life_days=value)))
    assert err.reason == f"shelf_life_days: not a whole number: '[31m{'9' * 36}'..."
    assert "\x1b" not in str(err)


def test_zone_spellings(tmp_path: Path) -> None:
    rows = [list(row) for row in BASE["procedures.csv"]]
    for row, zone in zip(rows[1:], ["SALE", " propre ", "STÉRILE"], strict=True):
        row[1] = zone
    bundle = read_bundle(build(tmp_path / "b", tables={"procedures.csv": rows}))
    assert [r["zone"] for r in bundle.tables["procedures"]] == ["sale", "propre", "sterile"]


def test_two_slots_of_one_room_and_time_without_patient_codes_are_taken(tmp_path: Path) -> None:
    rows = [list(r) for r in BASE["or_planning.csv"]]
    rows[1][3] = rows[2][3] = ""  # no patient named yet
    rows[2][2] = rows[1][2]
    tables = {"or_planning.csv": rows}
    assert len(read_bundle(build(tmp_path / "b", tables=tables)).tables["or_planning"]) == 2


@pytest.mark.parametrize(
    ("name", "extra", "reason"),
    [
        ("set_types.csv", ["JDIGGRBA", "Autre", "", "", "", "", "30"], "duplicate code 'JDIGGRBA' (first on line 2)"),
        ("set_instances.csv", ["JDIGGRBA#111", "JDIGGRBA", ""], "duplicate instance 'JDIGGRBA#111' (first on line 2)"),
        ("set_contents.csv", ["JDIGGRBA", "2", "I", "1", "PINCE", ""], "duplicate type_code 'JDIGGRBA' and line 2 (first on line 3)"),
        ("instruments.csv", [f"01{G1}21A001", G1, "A001", "", "", ""], f"duplicate udi '01{G1}21A001' (first on line 2)"),
        ("endoscopes.csv", ["2812345", "", "Gastroscope", "", "", ""], "duplicate serial '2812345' (first on line 2)"),
        ("instruments.csv", [f"(01){G1}(21)A001", G1, "A001", "", "", ""], "duplicate gtin '" + G1 + "' and serial 'A001' (first on line 2)"),
        ("profiles.csv", ["PURO001", "TURBT", "", "instrument", "BB084R", "1"], "duplicate profile_code 'PURO001' and surgeon '' and item_kind 'instrument' and item_code 'BB084R' (first on line 4)"),
        ("or_planning.csv", BASE["or_planning.csv"][1], "duplicate date '2026-11-30' and room 'J Salle 3' and start '08:00' for the same patient (first on line 2)"),
    ],
)  # fmt: skip
def test_refuses_a_duplicate_key(tmp_path: Path, name: str, extra: list[str], reason: str) -> None:
    err = refused(build(tmp_path / "b", tables=added(name, extra)))
    assert (err.file, err.line, err.reason) == (name, len(BASE[name]) + 1, reason)


@pytest.mark.parametrize(
    ("name", "index", "cells", "reason"),
    [
        ("set_instances.csv", 2, {"type_code": "JXXX"}, "type_code: 'JXXX' not in set_types.csv code"),
        ("set_contents.csv", 3, {"type_code": "JXXX"}, "type_code: 'JXXX' not in set_types.csv code"),
        ("instruments.csv", 2, {"set_instance": "JDIGGRBA#999"}, "set_instance: 'JDIGGRBA#999' not in set_instances.csv instance"),
        ("profiles.csv", 2, {"item_code": "JXXX"}, "item_code: 'JXXX' not in set_types.csv code"),
        ("or_planning.csv", 2, {"profile_code": "PXXX"}, "profile_code: 'PXXX' not in profiles.csv profile_code"),
    ],
)  # fmt: skip
def test_refuses_a_dangling_reference(
    tmp_path: Path, name: str, index: int, cells: dict[str, str], reason: str
) -> None:
    err = refused(build(tmp_path / "b", tables=edited(name, index, **cells)))
    assert (err.file, err.line, err.reason) == (name, index + 1, reason)


def test_instrument_items_are_not_set_references(tmp_path: Path) -> None:
    bundle = read_bundle(
        build(tmp_path / "b", tables=edited("profiles.csv", 3, item_code="ZZ999R"))
    )
    assert bundle.tables["profiles"][2]["item_code"] == "ZZ999R"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (G1[:-1] + str((int(G1[-1]) + 1) % 10), "bad GS1 check digit"),
        ("12345", "not a GTIN (8, 12, 13 or 14 digits)"),
        ("0376O12300001X", "not a GTIN (8, 12, 13 or 14 digits)"),
    ],
)
def test_refuses_a_bad_gtin(tmp_path: Path, value: str, reason: str) -> None:
    err = refused(build(tmp_path / "b", tables=edited("instruments.csv", 3, gtin=value)))
    assert (err.file, err.line, err.reason) == ("instruments.csv", 4, f"gtin: {reason}: {value!r}")


def test_refuses_more_rows_than_the_manifest(tmp_path: Path) -> None:
    err = refused(
        build(
            tmp_path / "b", manifest_edit=lambda m: m["files"]["set_instances.csv"].update(rows=2)
        )
    )
    assert (err.file, err.line, err.reason) == (
        "set_instances.csv",
        4,
        "more rows than the 2 in the manifest",
    )


def test_refuses_fewer_rows_than_the_manifest(tmp_path: Path) -> None:
    err = refused(
        build(
            tmp_path / "b", manifest_edit=lambda m: m["files"]["set_instances.csv"].update(rows=4)
        )
    )
    assert (err.file, err.line, err.reason) == (
        "set_instances.csv",
        None,
        "3 rows, the manifest says 4",
    )


def test_refuses_undecodable_bytes(tmp_path: Path) -> None:
    raw = encode(BASE["set_instances.csv"], encoding="cp1252").replace(b"Armoire", b"Arm\x81ire", 1)
    err = refused(build(tmp_path / "b", data={"set_instances.csv": raw}))
    assert (err.file, err.line) == ("set_instances.csv", 2)
    assert err.reason == "undecodable byte 0x81: neither UTF-8 nor Windows-1252"


@pytest.mark.parametrize(
    ("raw", "line", "reason"),
    [
        (b"\xef\xbb\xbfinstance;type_code;location\nA;B;\xe9\n", 2, "invalid UTF-8 after a UTF-8 BOM"),
        (b"instance;type_code;location\nA;B\x00;C\n", 2, "NUL byte: not a text file"),
        ("instance;type_code".encode("utf-16"), None, "UTF-16 is not supported: export as UTF-8 or Windows-1252"),
        (b"", None, "empty file: no header row"),
    ],
)  # fmt: skip
def test_refuses_bytes_that_are_not_text(
    tmp_path: Path, raw: bytes, line: int | None, reason: str
) -> None:
    err = refused(build(tmp_path / "b", data={"set_instances.csv": raw}))
    assert (err.file, err.line, err.reason) == ("set_instances.csv", line, reason)


def test_refuses_a_row_with_the_wrong_field_count(tmp_path: Path) -> None:
    err = refused(
        build(tmp_path / "b", tables=added("set_instances.csv", ["JDIGGRBA#113", "JDIGGRBA"]))
    )
    assert (err.file, err.line, err.reason) == (
        "set_instances.csv",
        5,
        "expected 3 fields, found 2",
    )


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    rows = [list(row) for row in BASE["or_planning.csv"]]
    rows[1][12] = "une\ndeux\ntrois"
    rows[2][0] = "hier"
    err = refused(build(tmp_path / "b", tables={"or_planning.csv": rows}))
    assert (err.file, err.line) == ("or_planning.csv", 5)


def test_refuses_malformed_quoting(tmp_path: Path) -> None:
    raw = b'instance;type_code;location\n"JDIGGRBA#111"x;JDIGGRBA;\n'
    err = refused(build(tmp_path / "b", data={"set_instances.csv": raw}))
    assert (err.file, err.line) == ("set_instances.csv", 2)
    assert err.reason.startswith("malformed CSV")


@pytest.mark.parametrize(
    "entry",
    ["../evil.csv", "/etc/evil.csv", "ok/../../evil.csv", "C:/evil.csv", "ok\\..\\..\\evil.csv"],
)
def test_refuses_an_unsafe_zip_entry(tmp_path: Path, entry: str) -> None:
    archive = zip_folder(build(tmp_path / "b"), tmp_path / "bundle.zip")
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr(zipfile.ZipInfo(entry), b"x")
    err = refused(archive)
    assert (err.file, err.line, err.reason) == (
        entry,
        None,
        "unsafe path in zip ('..' or absolute)",
    )


def test_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "notes.zip").write_bytes(b"not a zip")
    assert refused(tmp_path / "notes.zip").file == "notes.zip"
    assert refused(tmp_path / "absent").reason == "no such folder or zip file"


def test_refuses_files_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = build(tmp_path / "b")
    sizes = sorted((path.stat().st_size, path.name) for path in folder.glob("*.csv"))
    (second, _), (largest, name) = sizes[-2:]
    assert second < largest - 1
    monkeypatch.setattr(_bundle, "MAX_FILE_BYTES", largest - 1)
    for source in (folder, zip_folder(folder, tmp_path / "bundle.zip")):
        err = refused(source)
        assert (err.file, err.line, err.reason) == (
            name,
            None,
            f"file larger than {largest - 1} bytes",
        )


def test_refuses_a_corrupt_zip_entry(tmp_path: Path) -> None:
    archive = zip_folder(build(tmp_path / "b"), tmp_path / "bundle.zip")
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo("profiles.csv")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start : start + 8] = b"\xff" * 8
    archive.write_bytes(bytes(raw))
    err = refused(archive)
    assert err.file == "profiles.csv"
    assert err.reason.startswith("unreadable zip entry")


# -- patient data --------------------------------------------------------------------------

SECRET = "ZORGLUB"


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"birth_date": f"{SECRET}-1964"}, "birth_date: not a date (dd-mm-yyyy or yyyy-mm-dd)"),
        ({"birth_date": "31-02-1964"}, "birth_date: no such date"),
        ({"sex": SECRET}, "sex: not one of M/F/X"),
        ({"patient_code": f"{SECRET}\x07"}, "patient_code: holds a control character"),
    ],
)
def test_patient_values_never_appear_in_errors(
    tmp_path: Path, cells: dict[str, str], reason: str
) -> None:
    tables = edited("or_planning.csv", 2, patient_name=f"{SECRET} Hélène", **cells)
    err = refused(build(tmp_path / "b", tables=tables))
    assert (err.file, err.line, err.reason) == ("or_planning.csv", 3, reason)
    for text in (str(err), repr(err), err.reason, *map(str, err.args)):
        assert SECRET not in text
        assert "1964" not in text


def test_patient_code_in_endo_planning_is_withheld(tmp_path: Path) -> None:
    err = refused(
        build(tmp_path / "b", tables=edited("endo_planning.csv", 1, patient_code="1" * 101))
    )
    assert err.reason == "patient_code: longer than 100 characters"


def test_planning_keeps_only_the_patient_code(tmp_path: Path) -> None:
    bundle = read_bundle(build(tmp_path / "b"))
    for row in bundle.tables["or_planning"]:
        assert not {"patient_name", "birth_date", "sex"} & set(row)
    assert "DUPONT" not in repr(bundle)


# -- round trip -----------------------------------------------------------------------------

_ASCII = string.ascii_letters + string.digits + " ;,\t\"'\n()-/.:"
# Windows-1252 letters at 0xC0 and above: no run of them is valid UTF-8, so detection is certain.
_CP1252 = _ASCII + "àâäçéèêëîïôöùûüÀÂÄÇÉÈÊËÎÏÔÖÙÛÜ"
_DIALECTS = st.fixed_dictionaries(
    {
        "encoding": st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
        "sep": st.sampled_from([";", "\t", ","]),
        "newline": st.sampled_from(["\n", "\r\n"]),
        "quote_all": st.booleans(),
    }
)


def _not_accidental(char: str) -> bool:
    """Characters beyond Latin and Greek below U+0800 alone in a UTF-8 file without BOM are
    read as Windows-1252 (test_windows_1252_that_happens_to_be_valid_utf8_is_read_as_such)."""
    return not 0x250 <= ord(char) <= 0x7FF or 0x391 <= ord(char) <= 0x3C9


@st.composite
def planning_rows(draw: st.DrawFn, encoding: str) -> list[tuple[list[str], dict[str, Any]]]:
    """or_planning rows as written (in some date/time format) and as they must read back."""
    if encoding == "cp1252":
        text = st.text(st.sampled_from(_CP1252), max_size=20)
    else:
        text = st.text(
            st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")).filter(
                _not_accidental
            )
            | st.sampled_from(';,\t"\n'),
            max_size=20,
        )
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        day = draw(st.dates(date(1900, 1, 1), date(2199, 12, 31)))
        start = draw(st.times()).replace(second=0, microsecond=0)
        born = draw(st.none() | st.dates(date(1900, 1, 1), date(2026, 1, 1)))
        day_format = draw(st.sampled_from(["%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d"]))
        time_format = draw(st.sampled_from(["{:%H:%M}", "{:%H:%M:%S}", "{0.hour}h{0.minute:02d}"]))
        room = draw(text.filter(str.strip))
        other = [draw(text) for _ in range(5)]
        written = [
            day.strftime(day_format),
            room,
            time_format.format(start),
            draw(st.from_regex(r"[0-9]{0,9}", fullmatch=True)),
            draw(text),
            born.strftime(day_format) if born else "",
            draw(st.sampled_from(["", "M", "f", "x"])),
            *other[:4],
            draw(st.sampled_from(["", "PDIG001", "PURO001"])),
            other[4],
        ]
        expected = {
            "date": day.isoformat(),
            "room": room.strip(),
            "start": f"{start:%H:%M}",
            "patient_code": written[3],
            "admission": other[0].strip(),
            "anesthesia": other[1].strip(),
            "surgeon": other[2].strip(),
            "procedure": other[3].strip(),
            "profile_code": written[11],
        }
        rows.append((written, expected))
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dialect=_DIALECTS)
def test_rows_read_back_equal_in_any_dialect(data: st.DataObject, dialect: dict[str, Any]) -> None:
    rows = data.draw(planning_rows(dialect["encoding"]))
    table = [BASE["or_planning.csv"][0], *(written for written, _ in rows)]
    folder = Path(tempfile.mkdtemp(prefix="bundle-rt-"))
    try:
        bundle = read_bundle(build(folder / "b", tables={"or_planning.csv": table}, **dialect))
    finally:
        shutil.rmtree(folder)
    assert bundle.tables["or_planning"] == [expected for _, expected in rows]
    assert bundle.tables["set_types"][1]["steri_program"] == "PRION 134°"
