"""GS1 element strings: validation, parsing, encoding and round trips."""

from __future__ import annotations

import contextlib
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    BarcodeError,
    DeviceError,
    GS1Message,
    escape_internal,
    gtin_check_digit,
    normalize_gtin,
    parse_element_string,
    parse_gs1_date,
    parse_human,
    unescape_internal,
)
from devices._gs1 import AI_SPECS, CSET82, GS

GTIN = "03453120000011"


def test_check_digit_of_known_gtins() -> None:
    assert gtin_check_digit("0345312000001") == 1
    assert gtin_check_digit("400638133393") == 1  # EAN-13 4006381333931
    assert normalize_gtin("4006381333931") == "04006381333931"


@pytest.mark.parametrize("bad", ["03453120000012", "123", "0345312000001X", "", "١٢٣٤٥٦٧٨"])
def test_bad_gtins_are_refused(bad: str) -> None:
    with pytest.raises(BarcodeError):
        normalize_gtin(bad)


def test_parse_element_string_with_separators() -> None:
    msg = parse_element_string(f"{GS}01{GTIN}1726123110LOT_7{GS}21SN-1{GS}8004GIAI42")
    assert msg.as_dict() == {
        "01": GTIN,
        "17": "261231",
        "10": "LOT_7",
        "21": "SN-1",
        "8004": "GIAI42",
    }
    assert msg.gtin == GTIN
    assert msg.expiry == date(2026, 12, 31)
    assert msg.serial == "SN-1"
    assert msg.get("8004") == "GIAI42"


def test_fixed_length_field_tolerates_a_separator() -> None:
    msg = parse_element_string(f"01{GTIN}{GS}11261128{GS}10A")
    assert msg.production_date == date(2026, 11, 28)
    assert msg.lot == "A"


def test_day_zero_is_the_last_day_of_the_month() -> None:
    assert parse_gs1_date("280200") == date(2028, 2, 29)
    assert parse_gs1_date("270200") == date(2027, 2, 28)


def test_century_window_follows_gs1() -> None:
    today = date(2090, 1, 1)
    assert parse_gs1_date("450101", today) == date(2045, 1, 1)
    assert parse_gs1_date("410101", today) == date(2041, 1, 1)
    assert parse_gs1_date("400101", today) == date(2140, 1, 1)
    assert parse_gs1_date("991231", date(2026, 1, 1)) == date(1999, 12, 31)
    assert parse_gs1_date("751231", date(2026, 1, 1)) == date(2075, 12, 31)
    assert parse_gs1_date("770101", date(2026, 1, 1)) == date(1977, 1, 1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (f"01{GTIN[:-1]}2", "check digit"),
        (f"01{GTIN}17261341", "month"),
        (f"01{GTIN}17260230", "day"),
        (f"01{GTIN}1726", "truncated"),
        ("01123", "truncated"),
        (f"01{GTIN}3101000123", "unsupported AI"),
        (f"01{GTIN}10{'X' * 21}", "1 to 20"),
        (f"10A{GS}{GS}21B", "doubled separator"),
        (f"01{GTIN}10lot#1", "CSET 82"),
        (f"10A{GS}10B", "repeated"),
        ("", "empty"),
    ],
)
def test_malformed_element_strings_say_why(data: str, reason: str) -> None:
    with pytest.raises(BarcodeError, match=reason):
        parse_element_string(data)


def test_barcode_error_is_a_device_error_and_a_value_error() -> None:
    with pytest.raises(DeviceError):
        parse_element_string("99")
    with pytest.raises(ValueError, match="1 to 90"):
        parse_element_string("99")


def test_human_form() -> None:
    msg = parse_human(f"(01){GTIN}(21)A(B)C(91)X")
    assert msg.as_dict() == {"01": GTIN, "21": "A(B)C", "91": "X"}
    assert parse_human(f"(01){GTIN}(10)L1").human() == f"(01){GTIN}(10)L1"
    with pytest.raises(BarcodeError, match="parenthesis"):
        msg.human()
    with pytest.raises(BarcodeError):
        parse_human("(42)X")


def test_human_form_with_an_ai_it_does_not_read_is_refused_not_read_into_a_lot() -> None:
    """(10)L1(240)Z: a lot "L1(240)Z" would be a lot no label carries; refused, it is
    scanned again from the barcode itself (whose element string marks where fields end)."""
    with pytest.raises(BarcodeError, match=r"unsupported AI \(240\)"):
        parse_human(f"(01){GTIN}(10)L1(240)Z")
    with pytest.raises(BarcodeError, match=r"unsupported AI \(123\)"):
        parse_human(f"(01){GTIN}(21)S(123)")
    assert parse_human(f"(01){GTIN}(21)A(B)C").as_dict() == {"01": GTIN, "21": "A(B)C"}


def test_element_string_puts_separators_only_after_variable_fields() -> None:
    msg = GS1Message.build([("01", GTIN), ("10", "L1"), ("17", "270101"), ("21", "S")])
    assert msg.element_string() == f"01{GTIN}10L1{GS}1727010121S"
    assert msg.bracketed() == f"[01]{GTIN}[10]L1[17]270101[21]S"


def test_internal_escape() -> None:
    assert escape_internal("JDIGGRBA#111") == "JDIGGRBA%23111"
    assert escape_internal("100%") == "100%25"
    assert escape_internal("Stérile") == "St%C3%A9rile"
    assert unescape_internal("St%C3%A9rile") == "Stérile"
    for bad in ("%2", "%zz", "%FF"):
        with pytest.raises(BarcodeError):
            unescape_internal(bad)


# Round trips: encode, then parse, gives back the same message.

_cset82 = st.text(alphabet=sorted(CSET82), min_size=1, max_size=20)
_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def _gtins(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet="0123456789", min_size=13, max_size=13))
    return body + str(gtin_check_digit(body))


@st.composite
def _messages(draw: st.DrawFn) -> GS1Message:
    ais = draw(st.lists(st.sampled_from(sorted(AI_SPECS)), min_size=1, max_size=6, unique=True))
    pairs = []
    for ai in ais:
        kind = AI_SPECS[ai].kind
        if kind == "gtin":
            pairs.append((ai, draw(_gtins())))
        elif kind == "date":
            pairs.append((ai, draw(_dates).strftime("%y%m%d")))
        else:
            pairs.append((ai, draw(_cset82)))
    return GS1Message.build(pairs)


@settings(deadline=None)
@given(_messages())
def test_element_string_round_trip(msg: GS1Message) -> None:
    text = msg.element_string()
    assert parse_element_string(text) == msg
    assert parse_element_string(GS + text) == msg


@settings(deadline=None)
@given(_messages())
def test_human_round_trip(msg: GS1Message) -> None:
    if any("(" in e.value or ")" in e.value for e in msg.elements):
        with pytest.raises(BarcodeError):
            msg.human()
        return
    assert parse_human(msg.human()) == msg


@settings(deadline=None)
@given(st.text(max_size=40))
def test_internal_escape_round_trip(text: str) -> None:
    escaped = escape_internal(text)
    assert set(escaped) <= CSET82
    assert unescape_internal(escaped) == text


@settings(deadline=None)
@given(st.text(max_size=60))
def test_parser_never_fails_but_with_barcode_error(text: str) -> None:
    with contextlib.suppress(BarcodeError):
        parse_element_string(text)
