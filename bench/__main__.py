"""`python -m bench [names...]`: run the benchmarks, print their tables, save JSON results."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench._util import generic_table, machine_info, write_results

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the benchmark modules: public modules of bench/."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(BENCH_DIR)])
        if not info.name.startswith("_") and not info.ispkg
    )


def _load(name: str) -> ModuleType | None:
    module = importlib.import_module(f"bench.{name}")
    if not callable(getattr(module, "run", None)):
        return None
    return module


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (all when none is named); exit 1 if one failed."""
    available = discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {available})")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {available}")
    names = args.names or available
    if len(names) > 1:  # each in a process of its own, as each subject runs in a node
        return _each_alone(names, args.no_save)
    machine = machine_info()
    print(
        f"machine: {machine['cpus']} cpus, {machine['implementation']} {machine['python']}, "
        f"{machine['platform']}, {machine['date']}"
    )
    failed: list[str] = []
    for name in names:
        try:
            module = _load(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        if module is None:
            continue
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            results = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        render = getattr(module, "render", None)
        print(render(results) if callable(render) else generic_table(results))
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)
        if not args.no_save:
            print(f"saved {write_results(name, results)}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _each_alone(names: list[str], no_save: bool) -> int:
    """Run each benchmark in a fresh interpreter, one after the other: none measures its
    subject in a heap another one left behind (a month's fold after the converge benchmark's
    documents, which it holds until it ends, ran up to a sixth slower). Exit 1 if one failed."""
    failed = [
        name
        for name in names
        if subprocess.run(
            [sys.executable, "-m", "bench", name, *(["--no-save"] if no_save else [])],
            check=False,
        ).returncode
        != 0
    ]
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
