"""nbgrader settings every user of the course's JupyterHub shares (students and instructors).

The hub puts this folder on each single-user server's JUPYTER_CONFIG_PATH (deploy/jupyterhub/jupyterhub_config.py),
so `nbgrader fetch_assignment`, `submit`, `collect` and the Assignments tab all find the same exchange.
"""

import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# The same course id as the course directory's own nbgrader_config.py.
c.CourseDirectory.course_id = "diffusion-internals"
# nbgrader's default exchange; the hub passes another through the environment (its tests use a private one).
# Under it nbgrader keeps <course>/outbound (releases, readable by all), <course>/inbound (submissions: mode 733, so
# a student can write a submission but not list the others; each submission's folder name ends in a random string)
# and <course>/feedback (mode 711, files named by a hash of the submitted notebook).
c.Exchange.root = os.environ.get("DIFFUSION_INTERNALS_EXCHANGE", "/srv/nbgrader/exchange")
