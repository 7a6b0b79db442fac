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

# Grading executes student code in this kernel, installed into the course's virtual
# environment by `make setup`: the course's Python under an address-space limit
# (DIFFUSION_INTERNALS_GRADING_MEMORY_GB, default 8; see diffusion_internals.course.grading.kernel),
# so a cell that allocates far too much fails alone instead of exhausting the machine.
# Pinning it matters: with the default "python3", a stale user-level kernelspec can point to
# another Python without the package, and every test cell then scores 0.
c.Execute.kernel_name = os.environ.get("DIFFUSION_INTERNALS_KERNEL", "diffusion-internals-grading")
# Per-cell limit in seconds. The slowest legitimate cells are Project A's training cells (one model
# per cell, about 60 s on one core of a 2-core machine); 300 s leaves room for a slower or busier one.
c.Execute.timeout = int(os.environ.get("DIFFUSION_INTERNALS_CELL_TIMEOUT", "300"))
c.Execute.interrupt_on_timeout = True

# What a learner sees in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
