"""Where every benchmark writes its table: one CSV per script under benchmarks/results/."""

from __future__ import annotations

import csv
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def write_csv(path: Path, rows: Iterable[Mapping[str, object]], columns: Sequence[str] | None = None) -> Path:
    """Write rows (dicts) to path with a header (columns, else the first row's keys) and say where."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def run_script(main: Callable[[list[str]], object]) -> None:
    """A benchmark's entry point: main(sys.argv[1:]) without diffusers' deprecation notices in its table, then the
    total time."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        main(sys.argv[1:])
    print(f"total {time.perf_counter() - start:.0f} s")
