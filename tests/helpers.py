"""Shared builders for the test suite."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

STRICT = os.environ.get("STERIMESH_STRICT") == "1"


def require_tool(name: str) -> str:
    """The path of a system tool; fails under STERIMESH_STRICT=1, skips otherwise."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    return path


# One valid submission of every v1 event type, as a client sends it.
SUBMISSIONS: dict[str, dict[str, Any]] = {
    "set.received": {"set": "JDIGGRBA#111", "from": "Bloc J Salle 3", "missing": ["PINCE KOCHER"]},
    "wash.loaded": {
        "machine": "LAV-1",
        "program": "INSTRU 93°C 3MIN NORMAL",
        "sets": ["JDIGGRBA#111"],
    },
    "wash.cycle": {
        "machine": "LAV-1",
        "cycle_no": 4711,
        "result": "pass",
        "a0": 3000,
        "started": "2026-11-28T07:10:00+01:00",
        "ended": "2026-11-28T08:02:00+01:00",
        "params": {"t_max": 93.4},
        "raw": "CYCLE 4711\r\nRESULT OK\r\n",
    },
    "set.inspected": {
        "set": "JDIGGRBA#111",
        "result": "ok",
        "packaging": "ONE STEP 121 X121",
        "packer": "mdupont",
    },
    "steri.loaded": {
        "machine": "AUTO-2",
        "program": "NORMAL 134°",
        "sets": ["JDIGGRBA#111", "JDIGELAP01"],
    },
    "steri.cycle": {
        "machine": "AUTO-2",
        "cycle_no": "00815",
        "result": "pass",
        "phases": [{"name": "plateau", "result": "ok", "t_min": 134.1}],
        "t_min": 134.1,
        "t_max": 135.6,
        "p_max": 3.12,
        "hold_s": 300,
    },
    "steri.test": {"machine": "AUTO-2", "kind": "bowie_dick", "result": "pass", "lot": "BD-2211"},
    "load.released": {"load": "A-261128-001", "decision": "released", "checks": {"cycle": True}},
    "label.printed": {
        "set": "JDIGGRBA#111",
        "load": "A-261128-001",
        "lot": "A-261128-001",
        "expires_on": "2027-05-27",
    },
    "set.stocked": {"set": "JDIGGRBA#112", "lot": "L260914-0042", "expires_on": "2027-03-13"},
    "set.dispatched": {"set": "JDIGGRBA#111", "to": "Bloc J"},
    "set.used": {"set": "JDIGGRBA#111", "patient": "000501492", "room": "J Salle 3"},
    "endo.leak_test": {"endoscope": "GIF-H190-2101234", "result": "pass"},
    "endo.cleaned": {"endoscope": "GIF-H190-2101234"},
    "endo.aer_cycle": {
        "endoscope": "GIF-H190-2101234",
        "machine": "LDE-1",
        "cycle_no": 88,
        "result": "pass",
    },
    "endo.stored": {"endoscope": "GIF-H190-2101234"},
    "endo.used": {
        "endoscope": "GIF-H190-2101234",
        "patient": "000501493",
        "procedure": "Gastroscopie",
    },
    "event.voided": {"target": "1795869091234-00000-A", "reason": "scanned the wrong set"},
    "anomaly.resolved": {
        "anomaly": "an-0001",
        "decision": "accepted",
        "comment": "checked by hand",
    },
    "note": {"text": "Panne du laveur LAV-2, appel technicien.\nRetour prévu 14h."},
}


def submission(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A valid submission of the given type, with overrides."""
    return {"type": event_type, **SUBMISSIONS[event_type], **overrides}


def changed_bytes(data: Any, blob: bytes, most: int, least: int = 1) -> bytes:
    """`blob` with `least` to `most` bytes set, inserted or deleted anywhere (hypothesis's
    st.data() draws them)."""
    from hypothesis import strategies as st

    out = bytearray(blob)
    for _ in range(data.draw(st.integers(least, most))):
        at = data.draw(st.integers(0, len(out) - 1))
        how = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if how == "set":
            out[at] = data.draw(st.integers(0, 255))
        elif how == "insert":
            out.insert(at, data.draw(st.integers(0, 255)))
        elif len(out) > 1:
            del out[at]
    return bytes(out)
