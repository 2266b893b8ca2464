"""Shared builders and prerequisite checks for the devices tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from devices import LabelData

STRICT = os.environ.get("STERIMESH_STRICT") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under STERIMESH_STRICT=1) when a prerequisite is missing."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"prerequisite missing (STERIMESH_STRICT=1): {reason}")
    pytest.skip(reason)


def zxing() -> Any:
    """Return the zxingcpp module, or skip/fail."""
    try:
        import zxingcpp
    except ImportError:
        require(False, "zxing-cpp not installed (pip install zxing-cpp)")
        raise
    return zxingcpp


def pdftoppm() -> str:
    """Return the pdftoppm path, or skip/fail."""
    path = shutil.which("pdftoppm")
    require(path is not None, "pdftoppm not found (apt-get install poppler-utils)")
    assert path is not None
    return path


def rasterize(pdf: bytes, tmp_path: Path, dpi: int = 300) -> Any:
    """Render page 1 of `pdf` to a grayscale PIL image with pdftoppm."""
    src = tmp_path / "label.pdf"
    src.write_bytes(pdf)
    subprocess.run(
        [
            pdftoppm(),
            "-r",
            str(dpi),
            "-gray",
            "-png",
            "-singlefile",
            str(src),
            str(tmp_path / "page"),
        ],
        check=True,
        timeout=30,
    )
    with Image.open(tmp_path / "page.png") as image:
        return image.copy()


def label(**changes: Any) -> LabelData:
    """Return a realistic label, with `changes` applied."""
    fields: dict[str, Any] = {
        "set_code": "JDIGGRBA",
        "set_name": "JOL-GRANDE BASE DIGESTIVE",
        "instance": "JDIGGRBA#111",
        "lot": "B-261128-007",
        "sterilized_on": date(2026, 11, 28),
        "expires_on": date(2027, 5, 28),
        "sterilizer": "AUTOCLAVE-2",
        "cycle_no": "01234",
        "packer": "Marie Dupont",
        "label_id": "L-261128-0042",
    }
    fields.update(changes)
    return LabelData(**fields)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` until it is true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
