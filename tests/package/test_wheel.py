"""The package as released: the wheel alone, without the source tree, runs what a Colab learner runs first.

Every chapter's set-up cell installs `diffusion-internals[course]==<version>` from PyPI, so the wheel must carry
the committed checkpoints and tokenizer files (package data) and work where no clone exists.

* Fast: pyproject.toml's [tool.setuptools] (the packages found under src/ and the package-data globs), read
  independently of setuptools, selects every file git tracks under src/diffusion_internals/.
* Slow: `python -m build` (sdist, then the wheel from the sdist, as `make dist`; no isolation, so offline) on a
  copy of the files a commit would hold, as the release workflow's fresh checkout, and scripts/check_dist.py on
  the result; the wheel installed with --no-deps into a fresh virtual environment; then, in `python -I` from an
  empty folder, the Colab smoke path: import, load a committed checkpoint, 4 digits with DPM++ 2M Karras (the
  committed classifier, a separate network, must read the requested digits), and the tiny Stable Diffusion
  pipeline for 2 steps. Installing torch, diffusers and transformers from PyPI would take
  minutes, so the fresh environment gets the course's installed third-party packages from a .pth file naming
  .venv's site-packages. A directory added by a .pth line is not scanned for .pth files itself, so .venv's
  editable install (its .pth naming src/) stays off; the subprocess reports sys.path, the package's file and
  metadata, and every loaded module, and the test asserts that none comes from the source tree. It also checks
  that every requirement the wheel declares (base and the `course` extra) is met in that environment.
"""

from __future__ import annotations

import glob
import json
import shutil
import sysconfig
from pathlib import Path

import pytest
import tomllib
from support import BIN, ROOT, load_check_dist, require_tools, run

SRC = ROOT / "src"
PACKAGE = "diffusion_internals"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def selected_by(setuptools: dict) -> set[str]:
    """Files (relative to src/) that a [tool.setuptools] table puts in the wheel: modules and package data."""
    assert setuptools["packages"]["find"]["where"] == ["src"], "this reading knows packages.find under src/ only"
    data = setuptools.get("package-data", {})
    selected: set[str] = set()
    folders = [SRC / PACKAGE]  # packages.find: a folder with __init__.py, inside a package (setuptools' walk)
    while folders:
        folder = folders.pop()
        if not (folder / "__init__.py").is_file():
            continue
        name = ".".join(folder.relative_to(SRC).parts)
        selected |= {str(p.relative_to(SRC)) for p in folder.glob("*.py")}
        for pattern in data.get(name, []) + data.get("*", []):
            for match in glob.glob(pattern, root_dir=folder, recursive=True):
                if (folder / match).is_file():
                    selected.add(str((folder / match).relative_to(SRC)))
        folders += [p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"]
    return selected


def test_pyproject_ships_every_file_git_tracks_in_the_package():
    try:
        tracked = load_check_dist().tracked_package_files(ROOT)
    except RuntimeError as error:
        require_tools(f"no git repository to compare with: {error}")  # skips; fails in CI, which has one
    missing = sorted(tracked - selected_by(PYPROJECT["tool"]["setuptools"]))
    assert not missing, (
        f"tracked but not in the wheel: {missing}; add a folder's __init__.py or a glob to pyproject.toml's "
        "[tool.setuptools.package-data]"
    )


# Run by the fresh environment's Python in isolated mode (-I), from an empty folder: argv[1] is the source tree.
SMOKE = r"""
import importlib.metadata as md
import json
import sys
from pathlib import Path

import torch
from packaging.requirements import Requirement

import diffusion_internals
from diffusion_internals import sd
from diffusion_internals.course import checkpoints
from diffusion_internals.guidance import CFGDenoiser
from diffusion_internals.sampling import sample

src = Path(sys.argv[1]).resolve() / "src"
facts = {"isolated": sys.flags.isolated, "sys_path": sys.path, "file": diffusion_internals.__file__}
facts["version"] = diffusion_internals.__version__
facts["metadata"] = str(md.distribution("diffusion-internals").locate_file(""))
unmet = []
for text in md.requires("diffusion-internals") or []:
    req = Requirement(text)
    if req.marker is not None and not any(req.marker.evaluate({"extra": extra}) for extra in ("", "course")):
        continue  # another extra (test, release)
    try:
        found = md.version(req.name)
    except md.PackageNotFoundError:
        unmet.append(f"{req}: not installed")
        continue
    if not req.specifier.contains(found, prereleases=True):
        unmet.append(f"{req}: found {found}")
facts["unmet"] = unmet

# Chapter 4's first cells: a committed checkpoint, 4 digits with DPM++ 2M Karras, guidance 3 as in chapter 5.
facts["checkpoints"] = checkpoints.checkpoint_names()
denoiser = checkpoints.load_denoiser("digits-cosine-eps")
null = checkpoints.read_training_config("digits-cosine-eps")["null_label"]
labels = torch.tensor([0, 1, 2, 3])
guided = CFGDenoiser(denoiser, 3.0, uncond={"class_labels": torch.tensor([null])})
x = sample(guided, (4, 1, 8, 8), sampler="dpmpp_2m", schedule="karras", steps=20,
           generator=torch.Generator().manual_seed(0), extra_args={"class_labels": labels})  # (4, 1, 8, 8)
classifier = checkpoints.load_classifier("digits")
facts["digits"] = {"shape": list(x.shape), "finite": bool(x.isfinite().all()),
                   "read_as": classifier(x.clamp(-1, 1)).argmax(1).tolist()}

# Chapter 6 without a download: the tiny pipeline (the package's tokenizer files), our loop, 2 steps.
pipe = sd.tiny_pipeline()
prompt = "a photo of a cat"
ids = pipe.tokenizer(prompt).input_ids
image = sd.generate(pipe, prompt, name="DPM++ 2M Karras", steps=2, generator=torch.Generator().manual_seed(0),
                    output_type="pt")  # (1, 3, 64, 64) in [0, 1]
facts["sd"] = {"shape": list(image.shape), "finite": bool(image.isfinite().all()),
               "range": [float(image.min()), float(image.max())],
               "prompt": pipe.tokenizer.decode(ids, skip_special_tokens=True)}
facts["from_source_tree"] = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(src)
)
print(json.dumps(facts))
"""


def export_working_tree(to: Path) -> Path:
    """The working tree's files that a commit would hold (tracked or new, not ignored), as a fresh checkout has them.

    Building there, as the release workflow does, keeps local by-products out: setuptools reads the file list of
    an earlier build (src/*.egg-info/SOURCES.txt) and would ship files that pyproject.toml no longer selects.
    """
    try:
        listed = load_check_dist().git_files(ROOT, "--cached", "--others", "--exclude-standard")
    except RuntimeError as error:
        require_tools(f"no git repository to export the working tree from: {error}")  # skips; fails in CI
    for name in listed:
        if (ROOT / name).is_file():  # not a file deleted from the working tree
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)
    return to


def site_packages(python: Path) -> Path:
    """The purelib folder of an environment's Python."""
    found = run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=python.parent)
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip())


@pytest.mark.slow
def test_the_wheel_alone_runs_a_colab_learners_first_cells(tmp_path):
    checkout = export_working_tree(tmp_path / "checkout")
    dist = tmp_path / "dist"
    built = run([str(BIN / "python"), "-m", "build", "--no-isolation", "--outdir", str(dist), str(checkout)], tmp_path)
    assert built.returncode == 0, f"python -m build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    # New files the working tree has not added to git yet ship here; `make dist` refuses them for a release.
    checked = run([str(BIN / "python"), str(ROOT / "scripts" / "check_dist.py"), str(dist), "--allow-untracked"], ROOT)
    assert checked.returncode == 0, f"scripts/check_dist.py:\n{checked.stdout}{checked.stderr}"
    wheel = next(dist.glob("*.whl"))

    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    made = run([str(BIN / "python"), "-m", "venv", "--without-pip", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    installed = run(
        [str(BIN / "python"), "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
    )
    assert installed.returncode == 0, f"pip install {wheel.name}:\n{installed.stdout}{installed.stderr}"
    course = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}  # the course's third-party packages
    (site_packages(python) / "course_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(course)))

    empty = tmp_path / "learner"
    empty.mkdir()
    smoke = run([str(python), "-I", "-c", SMOKE, str(ROOT)], empty, 300)
    assert smoke.returncode == 0, f"the smoke path failed in the fresh environment:\n{smoke.stderr[-4000:]}"
    facts = json.loads(smoke.stdout.strip().splitlines()[-1])

    # Nothing came from the source tree: not the package, its metadata, a path entry or any loaded module.
    src, venv = SRC.resolve(), venv.resolve()
    assert facts["isolated"] == 1
    assert Path(facts["file"]).resolve().is_relative_to(venv), f"imported {facts['file']}, not the installed wheel"
    assert Path(facts["metadata"]).resolve().is_relative_to(venv), f"metadata from {facts['metadata']}"
    assert not [p for p in facts["sys_path"] if Path(p).resolve().is_relative_to(src)], facts["sys_path"]
    assert facts["from_source_tree"] == [], "modules loaded from the source tree"
    assert facts["version"] == PYPROJECT["project"]["version"]
    assert facts["unmet"] == [], "the environment does not meet the wheel's declared requirements"

    committed = sorted(p.parent.name for p in (SRC / PACKAGE / "course" / "checkpoints").glob("*/training.json"))
    assert facts["checkpoints"] == committed, "the installed package lists other checkpoints than the source tree"
    digits = facts["digits"]
    assert digits["shape"] == [4, 1, 8, 8] and digits["finite"]
    assert digits["read_as"] == [0, 1, 2, 3], "the committed classifier does not read the requested digits 0-3"
    image = facts["sd"]
    assert image["shape"] == [1, 3, 64, 64] and image["finite"]
    assert 0 <= image["range"][0] <= image["range"][1] <= 1, f"image values outside [0, 1]: {image['range']}"
    assert image["prompt"] == "a photo of a cat", "the tokenizer files did not round-trip the prompt"
