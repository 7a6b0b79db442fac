"""Grading jobs: one notebook in, one verdict out, run here, on local workers, or on a Dask cluster.

A job carries the notebook as nbgrader sanitized it (the instructor's locked cells put back) and
the limits; it needs no gradebook, no solutions and no course folder, only this package, Python and
bubblewrap on the worker. So the same job runs inline (`jobs=1`), on a `dask.distributed`
LocalCluster of `jobs` worker processes, or on an existing Dask cluster (`scheduler=` its address;
see the instructor guide for setting one up). A job that fails on its worker (the worker died, say)
comes back as an error verdict with the reason: it is reported, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import nbformat

from diffusion_internals.course.grading.harness import Verdict, grade_notebook
from diffusion_internals.course.grading.sandbox import Limits

__all__ = ["grade_job", "run_jobs"]


def grade_job(notebook_json: str, limits: dict, sandboxed: bool) -> dict:
    """Grade one sanitized notebook (JSON text); the verdict as JSON-able data.

    The hidden tests run here with the sandbox's thread count: with torch's default (every core) in
    each of J workers, J jobs on as many cores oversubscribe them and spin, and grading slows down.
    """
    import torch

    nb, checked = nbformat.reads(notebook_json, as_version=4), Limits(**limits)
    before = torch.get_num_threads()
    torch.set_num_threads(checked.threads)
    try:
        return grade_notebook(nb, checked, sandboxed=sandboxed).to_json()
    finally:
        torch.set_num_threads(before)


def _failed(error: BaseException) -> dict:
    return Verdict(
        status="error", reason=f"the grading job failed on its worker: {type(error).__name__}: {error}"
    ).to_json()


def run_jobs(
    payloads: list[tuple[str, dict, bool]],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    on_result: Callable[[int, dict], None],
) -> None:
    """Run grade_job on each payload; on_result(index, verdict) as each finishes (in any order)."""
    if not payloads:
        return
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if scheduler is None and jobs == 1:
        for index, payload in enumerate(payloads):
            try:
                on_result(index, grade_job(*payload))
            except Exception as error:  # a grader bug for one notebook must not stop the class
                on_result(index, _failed(error))
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,  # each submission's memory is limited by its sandbox's cgroup, not by Dask
            # Mutual TLS with throw-away certificates: on a shared server (a JupyterHub) another account must not
            # reach the scheduler on 127.0.0.1 and run code as the grader (Client.run), outside any sandbox.
            security=True,
        )
    client = Client(cluster or scheduler)
    try:
        futures = {
            client.submit(grade_job, *payload, pure=False, key=f"grade-{index}-{os.getpid()}"): index
            for index, payload in enumerate(payloads)
        }
        for future in as_completed(futures):
            index = futures[future]
            try:
                on_result(index, future.result())
            except Exception as error:
                on_result(index, _failed(error))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
