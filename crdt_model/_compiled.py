"""The fold compiled with mypyc: used only when it was built from these very sources.

The fold's modules (MODULES) are plain typed Python. `build` (run by `make`: see main)
compiles them with mypyc into `<sys.prefix>/sterimesh-compiled/crdt_model/`, beside a digest
of the package's sources it was built from. When crdt_model is imported, `activate` puts that
folder first on the package's path if the digest matches the sources beside it: the compiled
modules then load instead of the interpreted ones. An edited source runs interpreted until
the next build, never beside a stale compiled copy; a machine without a compiler, or
STERIMESH_PURE=1, runs everything interpreted. Same code and same results either way;
compiled, a month's refold takes about 0.4 of the time (bench/fold, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MODULES = ("_views", "_anomalies", "_fold", "_decode", "_verify", "_updates")
"""The modules compiled (together: calls between them are native calls)."""

PACKAGE = Path(__file__).resolve().parent
TARGET = Path(sys.prefix) / "sterimesh-compiled" / PACKAGE.name
STAMP = "SOURCES"
_GROUP = f"{PACKAGE.name}._compiled_lib"
"""The extension module holding the compiled code (mypyc adds `__mypyc` to its name)."""


def digest(package: Path = PACKAGE) -> str:
    """A digest of the package's sources (the compiled modules and every module they were
    compiled against) and of the interpreter that runs them."""
    h = hashlib.sha256(sys.version.encode())
    for path in sorted(package.glob("*.py")):
        h.update(f"\0{path.name}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def activate(path: list[str], target: Path = TARGET, package: Path = PACKAGE) -> bool:
    """Put the compiled modules first on the package `path` when they match the sources."""
    if os.environ.get("STERIMESH_PURE", "") not in ("", "0"):
        return False
    try:
        built = (target / STAMP).read_text(encoding="ascii").strip()
        current = digest(package)
    except (OSError, UnicodeDecodeError):
        return False
    if built != current:
        return False
    path.insert(0, str(target))
    return True


def is_compiled() -> bool:
    """True when the fold running in this process is the compiled one."""
    fold = importlib.import_module(f"{PACKAGE.name}._fold")  # not at the top: it comes after
    return not str(fold.__file__).endswith(".py")


def build(target: Path = TARGET) -> Path:
    """Compile MODULES with mypyc into `target` (replacing what was there); returns it.

    Built in a folder of its own beside `target`, then swapped in by renames: a process
    starting meanwhile finds the old build, the new one, or none (and runs interpreted).
    """
    # build-time tools (mypy, setuptools: the dev tools), not needed to run
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import setup  # noqa: PLC0415

    sources = digest()
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="sterimesh-mypyc-") as tmp:
            work = Path(tmp)
            here = Path.cwd()
            try:
                os.chdir(work)  # mypy's cache and setuptools' files stay in here
                extensions = mypycify(
                    [
                        "--ignore-missing-imports",  # installed copies have no mypy settings
                        f"--cache-dir={work / 'mypy'}",
                        *(str(PACKAGE / f"{name}.py") for name in MODULES),
                    ],
                    group_name=_GROUP,
                    target_dir=str(work / "c"),
                )
                setup(
                    name="sterimesh-compiled",
                    ext_modules=extensions,
                    script_args=[
                        "--quiet",
                        "build_ext",
                        "--build-lib",
                        str(work / "lib"),
                        "--build-temp",
                        str(work / "obj"),
                    ],
                )
            finally:
                os.chdir(here)
            built = work / "lib" / PACKAGE.name
            for path in built.iterdir():
                shutil.copy2(path, fresh / path.name)
        (fresh / STAMP).write_text(sources + "\n", encoding="ascii")
        fresh.chmod(0o755)
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return target


def main() -> None:
    """Build, and say where and how long it took.

    Run as `python -c "from crdt_model._compiled import main; main()"` (`python -m` would
    import this module twice: crdt_model imports it first).
    """
    started = time.monotonic()
    target = build()
    print(f"compiled {', '.join(MODULES)} into {target} in {time.monotonic() - started:.0f} s")
