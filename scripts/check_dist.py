"""Check the release artefacts that `make dist` built: every file git tracks in the package ships in them.

    python scripts/check_dist.py dist            # what `make dist` runs after `python -m build` and `twine check`

dist/ must hold exactly one wheel and one sdist, named after pyproject.toml's name and version (the release
workflow uploads everything in it). The wheel must hold every file that `git ls-files src/diffusion_internals`
lists (the modules, the committed checkpoints, the tokenizer files: package data that pyproject.toml's
[tool.setuptools.package-data] has to name) and no file of the package that git does not track (a local training
run, a stray notebook), and the licence text. The sdist must hold pyproject.toml, README.md, LICENSE and the same
files under src/. Each missing or extra file is named, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "diffusion_internals"
SDIST_TOP_LEVEL = ("pyproject.toml", "README.md", "LICENSE")  # what a build from the sdist alone needs besides src/
IGNORED = ("__pycache__", ".pyc", ".ipynb_checkpoints")  # never shipped, whatever git says


def project(root: Path = ROOT) -> tuple[str, str]:
    """(distribution name, version) from pyproject.toml."""
    table = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return table["name"], table["version"]


def git_files(root: Path, *options: str) -> list[str]:
    """`git ls-files -z <options>` in root, as paths; RuntimeError when git or the repository is unavailable."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", *options], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"git ls-files failed in {root}: {error}") from error
    return [path for path in listed.split("\0") if path]


def tracked_package_files(root: Path = ROOT) -> set[str]:
    """Paths relative to src/ ("diffusion_internals/sd/bpe.py") of the package's files that git tracks and that exist.

    Raises RuntimeError when git or the repository is unavailable (an unpacked sdist, a copy without .git).
    """
    files = {
        str(PurePosixPath(path).relative_to("src"))
        for path in git_files(root, "--", f"src/{PACKAGE}")
        if not any(part in path for part in IGNORED) and (root / path).is_file()
    }
    if not files:
        raise RuntimeError(f"git tracks no files under {root / 'src' / PACKAGE}")
    return files


def artefacts(dist: Path, root: Path = ROOT) -> tuple[Path, Path]:
    """(wheel, sdist) in dist/ for pyproject.toml's name and version; ValueError naming what is there otherwise."""
    name, version = project(root)
    stem = f"{name.replace('-', '_')}-{version}"
    expected = [dist / f"{stem}-py3-none-any.whl", dist / f"{stem}.tar.gz"]
    found = sorted(p.name for p in dist.iterdir()) if dist.is_dir() else []
    if sorted(p.name for p in expected) != found:
        raise ValueError(
            f"{dist} must hold exactly {[p.name for p in expected]} (pyproject.toml's version {version}), got {found}"
        )
    return expected[0], expected[1]


def wheel_files(wheel: Path) -> set[str]:
    """The files of a wheel, without its .dist-info metadata."""
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if not n.endswith("/") and ".dist-info/" not in n}


def sdist_files(sdist: Path) -> set[str]:
    """The files of an sdist, relative to its top folder (name-version/)."""
    with tarfile.open(sdist) as archive:
        return {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile() and "/" in m.name}


def problems(dist: Path, root: Path = ROOT, *, allow_untracked: bool = False) -> list[str]:
    """What is wrong with the wheel and sdist in dist/, one line per file; empty when they are complete."""
    try:
        wheel, sdist = artefacts(dist, root)
    except ValueError as error:
        return [str(error)]
    tracked = tracked_package_files(root)
    in_wheel = wheel_files(wheel)
    in_sdist = sdist_files(sdist)
    found = [f"missing from {wheel.name}: src/{path}" for path in sorted(tracked - in_wheel)]
    if not allow_untracked:
        untracked = {p for p in in_wheel if p.startswith(f"{PACKAGE}/")} - tracked
        found += [f"in {wheel.name} but not tracked by git: src/{path}" for path in sorted(untracked)]
    needed = set(SDIST_TOP_LEVEL) | {f"src/{path}" for path in tracked}
    found += [f"missing from {sdist.name}: {path}" for path in sorted(needed - in_sdist)]
    with zipfile.ZipFile(wheel) as archive:  # the licence text (pyproject.toml's license-files) ships in the wheel
        if not any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist()):
            found.append(f"missing from {wheel.name}: the licence text (.dist-info/licenses/LICENSE)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path, nargs="?", default=ROOT / "dist", help="the folder `python -m build` wrote")
    parser.add_argument(
        "--allow-untracked",
        action="store_true",
        help="accept package files git does not track yet (a working tree with new files; never for a release)",
    )
    args = parser.parse_args(argv)
    try:
        wheel, sdist = artefacts(args.dist)
    except ValueError as error:
        print(f"{error}: run `make dist`, which empties dist/ first")
        return 1
    found = problems(args.dist, allow_untracked=args.allow_untracked)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} problem(s): fix pyproject.toml's [tool.setuptools.package-data], or commit or remove them")
        return 1
    print(f"{wheel.name}: all {len(tracked_package_files())} tracked files of src/{PACKAGE}; {sdist.name}: complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
