"""Download what a GPU machine without network lacks to run the GPU check: the body of `make wheelhouse`.

    python scripts/wheelhouse.py [--out .whl/gpu-check]    # what `make wheelhouse` runs (needs network)

The GPU machine's image (:data:`IMAGE`: Python 3.12, torch with CUDA, transformers, numpy, ...) lacks the course's
own stack: diffusers, k-diffusion, nbgrader and its Jupyter libraries, dask.distributed. requirements/gpu-wheelhouse.txt
pins each distribution it lacks (the versions of requirements/constraints.txt, the tested ones) and says which step of
the check imports it. This script empties the folder, downloads those wheels for CPython 3.12 on manylinux x86-64
(`pip download --no-deps --only-binary=:all:`), downloads bubblewrap's .deb (the grader's sandbox is a Debian package,
`apt-get download`), and checks the folder: each pin there exactly once at its version, one version per distribution,
nothing the image already has, and the total under --limit-mib (60). It writes LISTING.md there (file, size, why)
and prints the table. The GPU machine then runs

    pip install --no-index --no-deps --target DIR .whl/gpu-check/*.whl    # PYTHONPATH=DIR, DIR/bin on PATH
    dpkg -x .whl/gpu-check/bubblewrap_*.deb /

Distributions the image has at other versions than the constraints (numpy, torch, transformers, tokenizers,
huggingface-hub, safetensors) are not carried: the check runs on the image's versions. Exit status 1, with the
reason, when a download fails (offline: the index is named), a pin is wrong, or the folder is too big.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check_dist():
    """scripts/check_dist.py, beside this script (by path: scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_dist", ROOT / "scripts" / "check_dist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


project = _check_dist().project  # (distribution name, version) from pyproject.toml
REQUIREMENTS = ROOT / "requirements" / "gpu-wheelhouse.txt"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
OUT = ROOT / ".whl" / "gpu-check"  # /.whl/ is git-ignored
LIMIT_MIB = 60.0

# The GPU machine's image (Python 3.12.3, /opt/torch/.venv): what it has is never carried, whatever its version.
# Names as pip spells them (PEP 503-normalised); a trailing * covers a family (cuda-*, nvidia-*, jax*, onnx*).
IMAGE_PYTHON = "3.12"
IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-* cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax*
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-* onnx*
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split()
# The image's versions where the constraints pin another one: the check runs on these, so they are not carried.
IMAGE_VERSIONS = {
    "torch": "2.11.0",
    "numpy": "2.5.2",
    "transformers": "5.17.0",
    "tokenizers": "0.23.2",
    "huggingface-hub": "1.33.0",
    "safetensors": "0.8.0",
    "torchdiffeq": "0.2.5",
}

# Binary wheels that install on the image: CPython 3.12, glibc 2.28 or newer (torch 2.11's own wheels need 2.28).
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_26_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux2010_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
DEBS = {"bubblewrap": "(d) bwrap, the grader's sandbox (Debian package, not a wheel: `dpkg -x` it into /)"}
DEB_ARCH = "amd64"
DEB_RELEASE = "bookworm"
LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s+#\s*(?P<why>\S.*)$")
WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares them: `Jinja2`, `jinja2` and `jinja-2` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def in_image(name: str) -> bool:
    """Whether the GPU image has the distribution `name` (at whatever version)."""
    return any(fnmatch.fnmatchcase(normalize(name), pattern) for pattern in IMAGE)


@dataclass(frozen=True)
class Pin:
    """One line of requirements/gpu-wheelhouse.txt: `name==version  # why`."""

    name: str
    version: str
    why: str

    @property
    def key(self) -> str:
        return normalize(self.name)


def read_pins(path: Path = REQUIREMENTS) -> list[Pin]:
    """The pins of a wheelhouse file; ValueError naming the line that is not `name==version  # why`."""
    pins = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        match = LINE.match(text)
        if match is None:
            raise ValueError(f"{path.name}:{number}: expected `name==version  # why it is needed`, got {raw!r}")
        pins.append(Pin(match["name"], match["version"], match["why"].strip()))
    return pins


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """Normalised name -> pinned version of a pip constraints file."""
    pins = {}
    for raw in path.read_text().splitlines():
        text = raw.split("#", 1)[0].strip()
        if "==" in text:
            name, version = text.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def wheel_name_version(filename: str) -> tuple[str, str] | None:
    """(normalised name, version) from a wheel's file name (PEP 427), None for another file."""
    match = WHEEL.match(filename)
    return (normalize(match["name"]), match["version"]) if match else None


def problems_with_pins(pins: list[Pin], constraints: dict[str, str], own: tuple[str, str]) -> list[str]:
    """What is wrong with the list itself: duplicates, distributions the image has, versions off the constraints."""
    out = []
    counts = Counter(pin.key for pin in pins)
    out += [f"{name} is listed {n} times" for name, n in sorted(counts.items()) if n > 1]
    for pin in pins:
        if in_image(pin.name):
            out.append(f"{pin.name}: the GPU image already has it (scripts/wheelhouse.py IMAGE); do not carry it")
        elif pin.key == normalize(own[0]):
            if pin.version != own[1]:
                out.append(f"{pin.name}=={pin.version}: pyproject.toml's version is {own[1]}")
        elif pin.key in constraints and pin.version != constraints[pin.key]:
            out.append(f"{pin.name}=={pin.version}: requirements/constraints.txt pins {constraints[pin.key]}")
    return out


def problems_with_folder(folder: Path, pins: list[Pin], limit_mib: float = LIMIT_MIB) -> list[str]:
    """What is wrong with a downloaded wheelhouse: a pin missing or twice, a stray wheel, the size over limit_mib."""
    out = []
    wheels = [(path, wheel_name_version(path.name)) for path in sorted(folder.glob("*.whl"))]
    out += [f"{path.name}: not a wheel's file name" for path, parsed in wheels if parsed is None]
    found = Counter(parsed[0] for _, parsed in wheels if parsed)
    out += [f"{name}: {n} wheels (one version per distribution)" for name, n in sorted(found.items()) if n > 1]
    versions = {parsed[0]: parsed[1] for _, parsed in wheels if parsed}
    wanted = {pin.key: pin for pin in pins}
    for key, pin in wanted.items():
        if key not in versions:
            out.append(f"{pin.name}=={pin.version}: no wheel in {folder}")
        elif versions[key] != pin.version:
            out.append(f"{pin.name}: the wheel is version {versions[key]}, the pin {pin.version}")
    out += [f"{name}: a wheel that no pin asks for" for name in sorted(set(versions) - set(wanted))]
    files = [path for path in folder.iterdir() if path.is_file()]
    total = sum(path.stat().st_size for path in files)
    if total > limit_mib * 2**20:
        biggest = sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:8]
        out.append(
            f"the folder holds {mib(total)} MiB, over the limit of {limit_mib:g} MiB; the biggest files: "
            + ", ".join(f"{p.name} ({mib(p.stat().st_size)} MiB)" for p in biggest)
        )
    return out


def mib(size: int) -> str:
    return f"{size / 2**20:.2f}"


def empty(folder: Path) -> None:
    """Empty a wheelhouse folder (created when missing); refuse a folder that holds anything else."""
    folder.mkdir(parents=True, exist_ok=True)
    others = [p.name for p in folder.iterdir() if p.suffix not in (".whl", ".deb") and p.name != "LISTING.md"]
    if others:
        raise SystemExit(f"wheelhouse: {folder} holds files that are not a wheelhouse's ({others[:5]}); not emptied")
    for path in folder.iterdir():
        path.unlink()


def index_reachable() -> str | None:
    """None when the package index answers, else why not (used to tell 'offline' from other pip failures)."""
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").split()[0]
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15).close()
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError) as error:
        return f"{url} is unreachable ({getattr(error, 'reason', error)})"
    return None


def run(command: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a command; exit with its output and, when the network is the cause, say so."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
    offline = index_reachable()
    reason = f"offline: {offline}; `make wheelhouse` downloads: run it where the network is" if offline else ""
    raise SystemExit(f"wheelhouse: {what} failed ({' '.join(command[:4])} ...)\n{tail}\n{reason}".rstrip())


def download_wheels(pins: list[Pin], folder: Path) -> None:
    """`pip download` every pin as a CPython 3.12 manylinux x86-64 (or pure Python) wheel, without dependencies."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    abi = "cp" + IMAGE_PYTHON.replace(".", "")
    command += ["--python-version", IMAGE_PYTHON, "--implementation", "cp", "--abi", abi]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += ["--dest", str(folder), *(f"{pin.name}=={pin.version}" for pin in pins)]
    run(command, "downloading the wheels")


def download_debs(folder: Path) -> list[Path]:
    """`apt-get download` each of DEBS for amd64 into folder."""
    if shutil.which("apt-get") is None:
        raise SystemExit("wheelhouse: apt-get is missing: bubblewrap's .deb comes from Debian's archive (bookworm)")
    for package in DEBS:
        run(["apt-get", "download", f"{package}:{DEB_ARCH}"], f"apt-get download {package}", cwd=folder)
    return sorted(folder.glob("*.deb"))


def deb_fields(path: Path) -> str:
    """Version and Depends of a .deb (what the image must already have for `dpkg -x` to be enough)."""
    try:
        fields = subprocess.run(
            ["dpkg-deb", "-f", str(path), "Version", "Depends"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return "; ".join(line.strip() for line in fields.splitlines() if line.strip())


def release_codename() -> str:
    """This machine's Debian/Ubuntu codename (apt-get download takes the release this machine uses)."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^VERSION_CODENAME=\"?([^\"\n]*)", text, re.MULTILINE)
    return match[1] if match else "unknown"


def listing(folder: Path, pins: list[Pin]) -> list[tuple[str, int, str]]:
    """(file, bytes, why) for each file of the folder."""
    why = {pin.key: pin.why for pin in pins}
    rows = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if path.suffix == ".whl":
            parsed = wheel_name_version(path.name)
            rows.append((path.name, path.stat().st_size, why.get(parsed[0], "?") if parsed else "?"))
        elif path.suffix == ".deb":
            package = path.name.split("_", 1)[0]
            note = deb_fields(path)
            rows.append((path.name, path.stat().st_size, DEBS.get(package, "?") + (f"; {note}" if note else "")))
    return rows


def table(rows: list[tuple[str, int, str]]) -> str:
    """The short table `make wheelhouse` prints: distribution, version, MiB, and the total."""
    short = []
    for name, size, _ in rows:
        parsed = wheel_name_version(name) or tuple(name.split("_")[:2])  # a .deb: package_version_arch.deb
        short.append((parsed[0], parsed[1], mib(size)))
    short.append((f"total: {len(rows)} files", "", mib(sum(size for _, size, _ in rows))))
    width = max(len(name) for name, _, _ in short)
    return "\n".join(f"{name:<{width}}  {version:<18} {size:>6} MiB" for name, version, size in short)


def write_listing(folder: Path, rows: list[tuple[str, int, str]]) -> Path:
    total = sum(size for _, size, _ in rows)
    codename = release_codename()
    lines = [
        "# GPU-check wheelhouse",
        "",
        "Written by `make wheelhouse` (scripts/wheelhouse.py) from requirements/gpu-wheelhouse.txt: what the GPU",
        f"image (Python {IMAGE_PYTHON}, torch with CUDA) lacks for the GPU check. Install with",
        "`pip install --no-index --no-deps --target DIR *.whl`, then PYTHONPATH=DIR, DIR/bin first on PATH (nbgrader",
        "runs `alembic` by name) and JUPYTER_PATH=DIR/share/jupyter (nbconvert's templates, for nbgrader's feedback);",
        "the Debian package with `dpkg -x bubblewrap_*.deb /`.",
        f"The .deb is {DEB_ARCH}, from this machine's release ({codename}"
        + ("" if codename == DEB_RELEASE else f"; the image expects {DEB_RELEASE}: check its Depends")
        + ").",
        "Not carried, on purpose: the image's own versions are the ones checked: "
        + ", ".join(f"{name} {version}" for name, version in IMAGE_VERSIONS.items())
        + ".",
        "",
        "| file | MiB | why |",
        "|---|---:|---|",
        *(f"| {name} | {mib(size)} | {why} |" for name, size, why in rows),
        f"| **total: {len(rows)} files** | **{mib(total)}** | |",
        "",
    ]
    path = folder / "LISTING.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the wheelhouse folder, emptied first (default {OUT})")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help="the pins (default %(default)s)")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="the most the folder may hold (MiB)")
    args = parser.parse_args(argv)

    pins = read_pins(args.requirements)
    own = project()
    wrong = problems_with_pins(pins, read_constraints(), own)
    if wrong:
        print("wheelhouse: " + args.requirements.name + ":\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    folder = args.out.resolve()
    empty(folder)
    # Not this package: its source travels with the working tree anyway (the GPU check puts src/ on PYTHONPATH),
    # and its wheel, with the checkpoints, would take 24 MiB of the 64 MiB a device call may carry.
    download_wheels([pin for pin in pins if pin.key != normalize(own[0])], folder)
    download_debs(folder)
    rows = listing(folder, pins)
    print(table(rows))
    wrong = problems_with_folder(folder, pins, args.limit_mib)
    if wrong:
        print("wheelhouse: " + str(folder) + ":\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    written = write_listing(folder, rows)
    print(f"Wrote {written.relative_to(ROOT) if written.is_relative_to(ROOT) else written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
