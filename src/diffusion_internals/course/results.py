"""The committed benchmark tables (benchmarks/results/*.csv) that chapters read instead of recomputing.

A chapter whose measurement takes minutes reads the table its benchmark script wrote and says which
script regenerates it. From a clone (the book build, a local notebook) the table is the working tree's
file; from an installed package (Colab, Binder) it is the repository's copy of the same path.
"""

from __future__ import annotations

import csv
import io
import urllib.request
from pathlib import Path

__all__ = ["RESULTS", "REPOSITORY_RAW", "committed_results"]

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"  # src/diffusion_internals/course/ -> root
REPOSITORY_RAW = "https://raw.githubusercontent.com/diffusion-internals/diffusion-internals"


def committed_results(name: str) -> list[dict[str, str]]:
    """Rows of benchmarks/results/<name> as dicts of strings (the script that writes it says how to regenerate it)."""
    if not isinstance(name, str) or not name.endswith(".csv") or "/" in name or "\\" in name:
        raise ValueError(f"name must be a file name in benchmarks/results/ ending in .csv, got {name!r}")
    path = RESULTS / name
    if path.is_file():
        text = path.read_text()
    elif RESULTS.is_dir():  # a clone without this table: name it, don't fetch another version
        available = sorted(p.name for p in RESULTS.glob("*.csv"))
        raise FileNotFoundError(f"benchmarks/results/{name} does not exist; the committed tables are {available}")
    else:  # an installed package: the repository's copy at the installed release's tag (main for a dev install)
        from diffusion_internals import __version__

        ref = "main" if "+" in __version__ or "dev" in __version__ else f"v{__version__}"
        with urllib.request.urlopen(f"{REPOSITORY_RAW}/{ref}/benchmarks/results/{name}") as response:
            text = response.read().decode()
    return list(csv.DictReader(io.StringIO(text)))
