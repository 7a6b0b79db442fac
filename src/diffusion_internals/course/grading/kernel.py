"""The grading kernel: ipykernel under an address-space limit, so that one submission cannot exhaust the machine.

nbgrader runs every submitted notebook in a Jupyter kernel. A cell that allocates far too much
memory would, in an ordinary kernel, push the grading machine into swap or the out-of-memory
killer, taking other work with it. This kernel sets ``RLIMIT_AS`` (the address-space limit,
``setrlimit(2)``) on its own process before ipykernel starts, so such an allocation fails inside
the cell (torch: ``RuntimeError: ... can't allocate memory``; Python: ``MemoryError``), the cell
scores 0 and grading goes on. Time is limited per cell by nbgrader (``Execute.timeout``).

    python -m diffusion_internals.course.grading.kernel install  # registers "diffusion-internals-grading" (make setup)
    DIFFUSION_INTERNALS_GRADING_MEMORY_GB=8                 # the limit, read when the kernel starts (default 8)

This is a resource limit, not a sandbox. `make autograde` does not use this kernel: it grades in the
sandbox of `diffusion_internals.course.grading.sandbox`. The kernel serves `nbgrader validate` and
learners who want the same limit on their own machine.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from pathlib import Path

__all__ = ["KERNEL_NAME", "MEMORY_ENV", "memory_limit_bytes", "kernel_spec", "install", "main"]

KERNEL_NAME = "diffusion-internals-grading"
MEMORY_ENV = "DIFFUSION_INTERNALS_GRADING_MEMORY_GB"
DEFAULT_MEMORY_GB = 8.0  # Project A's training, the largest legitimate cell, stays under 3 GB of address space


def memory_limit_bytes(environ: dict[str, str] | None = None) -> int:
    """The address-space limit in bytes from DIFFUSION_INTERNALS_GRADING_MEMORY_GB (default 8 GiB)."""
    text = (os.environ if environ is None else environ).get(MEMORY_ENV, str(DEFAULT_MEMORY_GB))
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not math.isfinite(gib) or gib < 1:
        raise ValueError(f"{MEMORY_ENV} must be a number of GiB >= 1 (torch alone needs about 1), got {text!r}")
    return int(gib * 2**30)


def kernel_spec(python: str = sys.executable) -> dict:
    """The kernel.json of the grading kernel for this Python."""
    return {
        "argv": [python, "-m", "diffusion_internals.course.grading.kernel", "-f", "{connection_file}"],
        "display_name": "Python (diffusion-internals, grading limits)",
        "language": "python",
        "metadata": {"debugger": False},
    }


def install(prefix: str | os.PathLike = sys.prefix) -> Path:
    """Write the grading kernel's spec under prefix/share/jupyter/kernels/ (like ipykernel install --sys-prefix)."""
    folder = Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(kernel_spec(), indent=1) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    """`install` registers the kernel; anything else starts ipykernel (argv as ipykernel_launcher's) under the limit."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["install"]:
        print(f"installed kernel {KERNEL_NAME!r} in {install()}")
        return
    limit = memory_limit_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # soft = hard: student code cannot raise it
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=argv)


if __name__ == "__main__":
    main()
