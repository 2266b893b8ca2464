"""What scanners send: classification of one scan, and framing of the stream."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import BarcodeError, Scan, ScanFramer, ScanKind, decode_label_code, parse_scan
from devices._gs1 import GS

GTIN = "03453120000011"


def test_gs1_datamatrix_with_symbology_identifier() -> None:
    scan = parse_scan(f"]d201{GTIN}21SN7{GS}17270101\r\n".encode())
    assert scan.kind is ScanKind.GS1
    assert scan.symbology == "]d2"
    assert scan.gs1 is not None
    assert scan.gs1.serial == "SN7"
    assert scan.gs1.expiry == date(2027, 1, 1)
    assert scan.text == f"01{GTIN}21SN7{GS}17270101"


@pytest.mark.parametrize(
    "raw",
    [
        f"{GS}01{GTIN}10L1",  # FNC1 sent as GS
        f"01{GTIN}10L1",  # no prefix, starts with AI 01 and a valid GTIN
        f"(01){GTIN}(10)L1",  # bracketed human form (keyboard wedge, manual entry)
        f"]C101{GTIN}10L1",  # GS1-128
        f"]Q301{GTIN}10L1",  # GS1 QR
    ],
)
def test_gs1_forms(raw: str) -> None:
    scan = parse_scan(raw)
    assert scan.kind is ScanKind.GS1
    assert scan.gs1 is not None
    assert scan.gs1.as_dict() == {"01": GTIN, "10": "L1"}


def test_set_instance_and_code128() -> None:
    assert parse_scan(b"JDIGGRBA#111\r") == Scan(ScanKind.INSTANCE, "JDIGGRBA#111")
    assert parse_scan("JDIGELAP01").kind is ScanKind.INSTANCE
    assert parse_scan("]C0JDIGELAP02") == Scan(ScanKind.INSTANCE, "JDIGELAP02", None, "]C0")
    assert parse_scan("B-261128-007") == Scan(ScanKind.CODE128, "B-261128-007")
    assert parse_scan("op 42").kind is ScanKind.CODE128
    # Digits starting with 01 but no valid GTIN: a plain value, not GS1.
    assert parse_scan("0112345678901234").kind is ScanKind.CODE128


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"\r\n", "empty"),
        (b"]d2", "only the symbology"),
        (b"ABC\x07DEF", "unsupported characters"),
        ("Stérile".encode("latin-1"), "unsupported characters"),
        (b"X" * 600, "longer than"),
        (f"]d201{GTIN[:-1]}9".encode(), "check digit"),
        (f"]d201{GTIN}17271301".encode(), "month"),
        (b"]d2420123", "unsupported AI"),
    ],
)
def test_unusable_scans_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(BarcodeError, match=reason):
        parse_scan(raw)


def test_our_label_code_is_recognised() -> None:
    raw = f"]d291JDIGGRBA%23111{GS}92B-261128-007{GS}93270528{GS}94261128{GS}95L-1"
    scan = parse_scan(raw)
    assert scan.gs1 is not None
    code = decode_label_code(scan.gs1)
    assert code is not None
    assert code.instance == "JDIGGRBA#111"
    assert code.expires_on == date(2027, 5, 28)
    # An instrument UDI (GTIN + serial + expiry + lot) is not one of our labels.
    udi = parse_scan(f"]d201{GTIN}21S1{GS}1727010110L")
    assert udi.gs1 is not None
    assert decode_label_code(udi.gs1) is None


def test_framer_fed_one_byte_at_a_time() -> None:
    framer = ScanFramer(b"\r\n")
    stream = b"JDIGGRBA#111\r\n\r\n]d201" + GTIN.encode() + b"10L1\r\nrest"
    frames: list[bytes] = []
    for byte in stream:
        frames += framer.feed(bytes([byte]))
    assert frames == [b"JDIGGRBA#111", b"]d201" + GTIN.encode() + b"10L1"]
    assert framer.flush() == [b"rest"]
    assert framer.flush() == []


def test_framer_cuts_a_runaway_stream_and_drops_its_tail() -> None:
    """The overlong run is one frame (refused as too long); what follows it up to the
    terminator is the rest of the same scan, never a scan of its own."""
    framer = ScanFramer(b"\r", max_length=16)
    frames = framer.feed(b"A" * 40)
    assert frames == [b"A" * 40]
    assert framer.feed(b"ZZZ JDIGGRBA#112\r") == []
    assert framer.feed(b"JDIGGRBA#111\r") == [b"JDIGGRBA#111"]
    framer.feed(b"B" * 40)
    assert framer.flush() == []  # a disconnect: the tail is dropped too
    crlf = ScanFramer(b"\r\n", max_length=16)  # its terminator split across two reads
    assert crlf.feed(b"X" * 20 + b"\r") == [b"X" * 20 + b"\r"]
    assert crlf.feed(b"\nGOOD-SCAN\r\n") == [b"GOOD-SCAN"]


@settings(deadline=None)
@given(
    st.lists(st.text(alphabet="ABCDEFGH0123456789#-", min_size=1, max_size=12), max_size=8),
    st.integers(min_value=1, max_value=7),
)
def test_framer_is_independent_of_chunking(scans: list[str], size: int) -> None:
    stream = b"".join(s.encode() + b"\t" for s in scans)
    framer = ScanFramer(b"\t")
    frames: list[bytes] = []
    for i in range(0, len(stream), size):
        frames += framer.feed(stream[i : i + size])
    assert frames == [s.encode() for s in scans]
