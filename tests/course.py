"""Helpers for tests that run course commands (nbgrader, jupyter-book) as subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def course_env() -> dict[str, str]:
    """The environment for subprocesses: the course's bin first, a quiet, offline hub."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command, returning its result; the output is kept for assertion messages."""
    return subprocess.run(
        cmd, cwd=cwd, env=course_env(), capture_output=True, text=True, timeout=timeout, check=False
    )

