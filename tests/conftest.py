"""Fixtures shared by the test modules."""

from __future__ import annotations

import re

import pytest
import torch
from support import BIN, ROOT, run


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (as the training CLI): on a busy 2-core machine two threads can be 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def built_book():
    """The whole book built once per test session (executed, warnings as errors): the site's _build/html."""
    # --all re-reads every page so warnings of unchanged pages are reported again;
    # execution results still come from the jupyter-cache when the code is unchanged.
    # As `make book-strict`: the chapters first run into the cache, one per core, then the build renders.
    executed = run([str(BIN / "python"), str(ROOT / "scripts" / "execute_book.py")], cwd=ROOT, timeout=1500)
    assert executed.returncode == 0, (
        f"executing the chapters failed:\n{executed.stdout[-3000:]}\n{executed.stderr[-3000:]}"
    )
    result = run(
        [str(BIN / "jupyter-book"), "build", str(ROOT), "--all", "-W", "-n", "--keep-going"], cwd=ROOT, timeout=1500
    )
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    # The build found every chapter that execute_book.py ran in the cache (same reader, kernel, hash).
    rerun = set(re.findall(r"(\w+)\.md: Executing notebook", result.stdout + result.stderr))
    assert rerun <= {"performance"}, f"the build ran these chapters again instead of using the cache: {sorted(rerun)}"
    return ROOT / "_build" / "html"
