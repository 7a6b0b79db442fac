"""nbgrader configuration for the Diffusion Internals course.

`solutions/` holds the instructor's source notebooks (solutions and hidden tests);
`exercises/` is the student release, generated from it with `make release`.
Every path is anchored at this file's folder, so the commands work from any
working directory and in a temporary copy of the course (as the tests do).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

ROOT = Path(__file__).resolve().parent

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "diffusion-internals"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# Grading work folders (git-ignored): submissions go in submitted/<student>/<assignment>/.
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + str(ROOT / "gradebook.db")
# Only notebooks are released: never copy checkpoints or caches into exercises/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".pytest_cache"]

# Grading: nbgrader keeps its workflow (gradebook, scores, feedback), but the code runs in the course's
# trusted grader (diffusion_internals.course.grading): each student's cells in a bubblewrap sandbox
# (no network, no files but its own, memory and process limits for all its processes together), the
# hidden tests in the grader's process, calling the student's functions over a pipe. Limits come from
# the environment: DIFFUSION_INTERNALS_CELL_TIMEOUT (s per cell, default 300: Project A's training
# cells take about 60 s on one core of a 2-core machine), DIFFUSION_INTERNALS_NOTEBOOK_TIMEOUT (s per
# notebook, default 1800), DIFFUSION_INTERNALS_GRADING_MEMORY_GB (default 8, all processes together).
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from diffusion_internals.course.grading.preprocessors import (  # noqa: E402
    HideHiddenTests,
    RestoreHiddenTests,
    SandboxedExecute,
)

c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreHiddenTests,  # the released test cells get their hidden tests back without a false checksum warning
    OverwriteCells,
    CheckCellMetadata,
]
c.Autograde.autograde_preprocessors = [
    SandboxedExecute,  # in place of nbgrader's Execute
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
# Collecting from nbgrader's exchange (a JupyterHub): only submissions a student's own account made, at the time
# the file system says (diffusion_internals.course.grading.exchange).
c.ExchangeFactory.collect = "diffusion_internals.course.grading.exchange.OwnerCheckedCollect"
# Kernels are still used by `nbgrader validate` and by learners: the course's kernel, pinned.
c.Execute.kernel_name = os.environ.get("DIFFUSION_INTERNALS_KERNEL", "diffusion-internals-grading")

# What a learner sees in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
