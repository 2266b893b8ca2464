"""The sample-data generator: coherent bundles that read back, byte for byte reproducible."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from node._bundle import FILES, Bundle, read_bundle
from node._sample import SCALES, write_sample

START = date(2026, 11, 27)  # a Friday: the 3-day window holds one weekend


def check_digit_ok(gtin: str) -> bool:
    """GS1 mod-10 check, written apart from the code under test."""
    digits = [int(d) for d in gtin]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    return (10 - total % 10) % 10 == digits[-1]


def check_coherent(bundle: Bundle, start: date, days: int) -> None:
    """Cross-table facts the reader does not enforce but the sample promises."""
    t = bundle.tables
    type_codes = {r["code"] for r in t["set_types"]}
    assert {r["type_code"] for r in t["set_contents"]} == type_codes
    for row in t["set_types"]:
        assert row["shelf_life_days"] in (30, 90, 180, 365)
        assert row["name"].startswith("JOL-")
    zones = Counter((r["type_code"], r["zone"]) for r in t["procedures"])
    for code in type_codes:
        assert zones[code, "sale"] >= 1
        assert zones[code, "propre"] == 1
        assert zones[code, "sterile"] == 1
    for row in t["set_instances"]:
        assert re.fullmatch(re.escape(row["type_code"]) + r"(#\d+|\d\d)", row["instance"])
    refs = Counter(r["ref"] for r in t["instruments"])
    for row in t["instruments"]:
        assert check_digit_ok(row["gtin"])
        assert row["udi"] == f"01{row['gtin']}21{row['serial']}"
    for row in t["profiles"]:
        if row["item_kind"] == "instrument":
            assert refs[row["item_code"]] >= 1
    window = {start + timedelta(days=n) for n in range(days)}
    profiles = {r["profile_code"] for r in t["profiles"]}
    for row in t["or_planning"]:
        day = date.fromisoformat(row["date"])
        assert day in window
        assert day.weekday() < 5
        assert "07:30" <= row["start"] <= "17:00"
        assert re.fullmatch(r"\d{9}", row["patient_code"])
        assert not row["profile_code"] or row["profile_code"] in profiles
        assert row["surgeon"].startswith("Dr ")
    endo_types = {r["type"] for r in t["endoscopes"]}
    assert t["endo_planning"]
    for row in t["endo_planning"]:
        assert row["endoscope_type"] in endo_types
        assert date.fromisoformat(row["date"]) in window


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small bundle in both encodings, written once."""
    base = tmp_path_factory.mktemp("small")
    return {
        encoding: write_sample(base / encoding, encoding=encoding, start=START)
        for encoding in ("utf-8", "cp1252")
    }


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_small_reads_back_coherent(small: dict[str, Path], encoding: str) -> None:
    bundle = read_bundle(small[encoding])
    t = bundle.tables
    assert bundle.export_id == "SAMPLE-SMALL-20261127-s1"
    assert bundle.exported_at == "2026-11-26T22:00:00+01:00"
    assert len(t["set_types"]) == 12
    assert len(t["set_instances"]) == 40
    assert 300 <= len(t["instruments"]) <= 600
    assert len(t["endoscopes"]) == 4
    assert len({r["profile_code"] for r in t["profiles"]}) == 10
    assert len({r["room"] for r in t["or_planning"]}) == 3
    assert {r["date"] for r in t["or_planning"]} == {"2026-11-27"}
    check_coherent(bundle, START, 3)


def test_encodings_hold_the_same_data(small: dict[str, Path]) -> None:
    utf8, cp1252 = read_bundle(small["utf-8"]).tables, read_bundle(small["cp1252"]).tables
    # The hospital's Windows export writes local wall-clock timestamps, without an offset.
    for a, b in zip(utf8["endoscopes"], cp1252["endoscopes"], strict=True):
        stamp = a.pop("last_reprocessed_at")
        assert b.pop("last_reprocessed_at") == (stamp and stamp[:19])
    assert utf8 == cp1252


def test_cp1252_output_is_windows_1252(small: dict[str, Path]) -> None:
    raw = (small["cp1252"] / "set_types.csv").read_bytes()
    assert b"\xe9" in (small["cp1252"] / "procedures.csv").read_bytes()  # Stérile
    assert b"\xb0" in raw  # 134°
    assert not raw.startswith(b"\xef\xbb\xbf")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert raw.count(b"\r\n") == raw.count(b"\n")
    planning = (small["cp1252"] / "or_planning.csv").read_bytes()
    assert re.search(rb"\r\n27-11-2026;J Salle 1;07:30;", planning)


def test_utf8_output_has_bom_lf_and_iso_dates(small: dict[str, Path]) -> None:
    raw = (small["utf-8"] / "or_planning.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfdate;room;start;")
    assert b"\r\n" not in raw
    assert b"\n2026-11-27;J Salle 1;07:30;" in raw
    assert "Stérile".encode() in (small["utf-8"] / "procedures.csv").read_bytes()


def test_same_seed_same_bytes(tmp_path: Path, small: dict[str, Path]) -> None:
    for encoding, first in small.items():
        again = write_sample(tmp_path / encoding, encoding=encoding, start=START)
        for name in [*FILES, "manifest.json"]:
            assert (again / name).read_bytes() == (first / name).read_bytes(), name


def test_other_seed_or_start_differs(tmp_path: Path, small: dict[str, Path]) -> None:
    other = write_sample(tmp_path / "s2", seed=2, start=START)
    later = write_sample(tmp_path / "later", start=START + timedelta(days=3))
    for name in FILES:
        assert (other / name).read_bytes() != (small["utf-8"] / name).read_bytes(), name
    assert read_bundle(other).export_id == "SAMPLE-SMALL-20261127-s2"
    assert read_bundle(later).export_id == "SAMPLE-SMALL-20261130-s1"
    check_coherent(read_bundle(later), START + timedelta(days=3), 3)


def test_default_start_is_today(tmp_path: Path) -> None:
    bundle = read_bundle(write_sample(tmp_path / "b"))
    today = date.today()
    assert bundle.export_id in {
        f"SAMPLE-SMALL-{d:%Y%m%d}-s1" for d in (today, today - timedelta(1))
    }


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        write_sample(tmp_path / "busy", start=START)
    (tmp_path / "empty").mkdir()
    assert write_sample(tmp_path / "empty", start=START) == tmp_path / "empty"


@pytest.mark.parametrize(
    ("scale", "encoding", "match"),
    [("huge", "utf-8", "unknown scale"), ("small", "latin-9", "unsupported encoding")],
)
def test_refuses_bad_arguments(tmp_path: Path, scale: str, encoding: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_sample(tmp_path / "b", scale=scale, encoding=encoding, start=START)
    assert not (tmp_path / "b").exists()


def test_hospital_scale(tmp_path: Path) -> None:
    assert SCALES == ("small", "hospital")
    folder = write_sample(tmp_path / "h", scale="hospital", encoding="cp1252", start=START)
    bundle = read_bundle(folder)
    t = bundle.tables
    assert bundle.export_id == "SAMPLE-HOSP-20261127-s1"
    assert len(t["set_types"]) == 400
    assert len(t["set_instances"]) == 2500
    assert 57_000 <= len(t["instruments"]) <= 63_000
    assert len(t["endoscopes"]) == 40
    assert len({r["profile_code"] for r in t["profiles"]}) == 300
    assert len({r["room"] for r in t["or_planning"]}) == 15
    assert len({r["date"] for r in t["or_planning"]}) == 10
    per_room_day = Counter((r["room"], r["date"]) for r in t["or_planning"])
    assert min(per_room_day.values()) >= 2
    assert len({r["room"] for r in t["endo_planning"]}) == 3
    departments = {r["department"] for r in t["set_types"]}
    assert {"Digestif", "Orthopédie", "Urologie", "Gynécologie", "ORL"} <= departments
    assert 60_000 <= sum(len(rows) for rows in t.values()) <= 80_000
    check_coherent(bundle, START, 14)
