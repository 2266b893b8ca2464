"""The compiled fold is used only when it was built from the sources beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crdt_model import _compiled


def _package(root: Path) -> Path:
    package = root / "pkg"
    package.mkdir()
    for name in _compiled.MODULES:
        (package / f"{name}.py").write_text(f"VALUE = {name!r}\n", encoding="utf-8")
    return package


def _built(root: Path, package: Path) -> Path:
    target = root / "compiled"
    target.mkdir()
    (target / _compiled.STAMP).write_text(_compiled.digest(package) + "\n", encoding="ascii")
    return target


@pytest.fixture
def compiled_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STERIMESH_PURE", raising=False)


@pytest.mark.usefixtures("compiled_allowed")
def test_a_build_of_these_sources_goes_first_on_the_path(tmp_path: Path) -> None:
    package = _package(tmp_path)
    target = _built(tmp_path, package)
    path = [str(package)]
    assert _compiled.activate(path, target, package)
    assert path == [str(target), str(package)]


@pytest.mark.usefixtures("compiled_allowed")
def test_an_edited_source_runs_interpreted_until_the_next_build(tmp_path: Path) -> None:
    package = _package(tmp_path)
    target = _built(tmp_path, package)
    (package / f"{_compiled.MODULES[-1]}.py").write_text("VALUE = 'edited'\n", encoding="utf-8")
    path = [str(package)]
    assert not _compiled.activate(path, target, package)
    assert path == [str(package)]


@pytest.mark.usefixtures("compiled_allowed")
def test_no_build_or_a_damaged_stamp_runs_interpreted(tmp_path: Path) -> None:
    package = _package(tmp_path)
    path = [str(package)]
    assert not _compiled.activate(path, tmp_path / "never-built", package)
    target = _built(tmp_path, package)
    (target / _compiled.STAMP).write_bytes(b"\xff\xfe")
    assert not _compiled.activate(path, target, package)
    assert path == [str(package)]


def test_sterimesh_pure_runs_interpreted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(tmp_path)
    target = _built(tmp_path, package)
    monkeypatch.setenv("STERIMESH_PURE", "1")
    path = [str(package)]
    assert not _compiled.activate(path, target, package)
    assert path == [str(package)]


def test_the_suite_runs_the_fold_it_was_asked_to() -> None:
    """`make test` builds the compiled fold and runs the suite on it, then the model's tests
    interpreted (STERIMESH_PURE=1): in CI (STERIMESH_STRICT=1) neither may fall back."""
    if os.environ.get("STERIMESH_PURE"):
        assert not _compiled.is_compiled()
    elif os.environ.get("STERIMESH_STRICT") == "1":
        assert _compiled.is_compiled(), "the compiled fold was not built for these sources"
    else:
        pytest.skip("outside CI the fold may run interpreted (make compiled builds it)")
