"""Benchmarks, run by `make bench` (`python -m bench [names...]`).

Each public module here (`bench/NAME.py`, not starting with `_`) is one benchmark:
- `run()` measures and returns JSON-serialisable results;
- `main()` runs it alone and prints its table (`python -m bench.NAME`);
- optionally `render(results) -> str` formats the table of `run()`'s results; without
  it the runner prints a generic table of the result rows.
Every benchmark names its anchor (a baseline measured in the same run on the same
machine) and prints its ratios to it.
"""

from __future__ import annotations
