"""JupyterHub for one class of the Diffusion Internals course on one server (deploy/jupyterhub/README.md).

Run as root, from the course's environment: `jupyterhub -f deploy/jupyterhub/jupyterhub_config.py`.

* Accounts: every user is a Unix account of this server (PAM logs them in); the hub starts each one's
  Jupyter server as that account, so Unix permissions keep homes, submissions and the instructor's
  `solutions/` apart.
* Students get the Assignments and Courses tabs (fetch, validate, submit, fetch feedback) and nothing of the
  formgrader; instructors get the formgrader, with the course directory as their server's root.
* nbgrader's exchange is one folder that every user reaches (jupyter/everyone/nbgrader_config.py).
* An instructor's server runs inside a cgroup delegated to them, so `make autograde` in its terminal grades
  every submission in the course's sandbox (bubblewrap plus a per-submission cgroup) without root.

Set from the environment (defaults in brackets):
  DIFFUSION_INTERNALS_HUB_INSTRUCTORS  Unix account names of the instructors, comma-separated (required)
  DIFFUSION_INTERNALS_HUB_ROSTER       the class roster, a CSV with an `id` column: the students' Unix account
                                       names (the same file `nbgrader db student import` reads) (required)
  DIFFUSION_INTERNALS_HUB_URL          where the hub listens [http://127.0.0.1:8000]; put TLS in front of it,
                                       or set c.JupyterHub.ssl_cert and ssl_key
  DIFFUSION_INTERNALS_HUB_API_PORT     the hub's own port on 127.0.0.1 [8081]; the proxy's API uses the next one
  DIFFUSION_INTERNALS_HUB_STATE        the hub's database, cookie secret and proxy pid file [/srv/jupyterhub]
  DIFFUSION_INTERNALS_EXCHANGE         nbgrader's exchange folder [/srv/nbgrader/exchange]
  DIFFUSION_INTERNALS_COURSE_DIR       an instructor's course directory (a clone of the course) [~/diffusion-internals]
  DIFFUSION_INTERNALS_HUB_AUTH         pam [pam], or dummy: any allowed user with DIFFUSION_INTERNALS_HUB_PASSWORD;
                                       for the course's tests, never for a class
"""

import contextlib
import csv
import os
import pwd
import shutil
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner

from diffusion_internals.course.grading.sandbox import delegate_cgroup, join_cgroup

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

HERE = Path(__file__).resolve().parent
ENV_BIN = Path(sys.executable).parent  # the course's environment: the hub and every user's server run from it


def required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"{name} is not set; see the top of {__file__}")
    return value


INSTRUCTORS = sorted({name.strip() for name in required("DIFFUSION_INTERNALS_HUB_INSTRUCTORS").split(",") if name})
with open(required("DIFFUSION_INTERNALS_HUB_ROSTER"), newline="", encoding="utf-8") as roster:
    STUDENTS = sorted({row["id"].strip() for row in csv.DictReader(roster) if row.get("id", "").strip()})
if set(INSTRUCTORS) & set(STUDENTS):
    raise SystemExit(f"accounts both instructor and student: {sorted(set(INSTRUCTORS) & set(STUDENTS))}")
EXCHANGE = os.environ.get("DIFFUSION_INTERNALS_EXCHANGE", "/srv/nbgrader/exchange")
STATE = Path(os.environ.get("DIFFUSION_INTERNALS_HUB_STATE", "/srv/jupyterhub"))
STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
API_PORT = int(os.environ.get("DIFFUSION_INTERNALS_HUB_API_PORT", "8081"))

c.JupyterHub.bind_url = os.environ.get("DIFFUSION_INTERNALS_HUB_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = API_PORT
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{API_PORT + 1}"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
# The proxy (configurable-http-proxy, from npm): on PATH, or where `make hub` installs it in the environment.
proxy = (
    shutil.which("configurable-http-proxy") or ENV_BIN.parent / "hub-proxy/node_modules/.bin/configurable-http-proxy"
)
c.ConfigurableHTTPProxy.command = [str(proxy)]

c.Authenticator.allowed_users = set(INSTRUCTORS) | set(STUDENTS)
# Only the roster: a student dropped from it can no longer log in (with allowed_users set, JupyterHub would
# otherwise keep admitting every user already in its database).
c.Authenticator.allow_existing_users = False
c.JupyterHub.load_groups = {"instructors": {"users": INSTRUCTORS}, "students": {"users": STUDENTS}}
if os.environ.get("DIFFUSION_INTERNALS_HUB_AUTH", "pam") == "dummy":
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = required("DIFFUSION_INTERNALS_HUB_PASSWORD")
else:
    c.JupyterHub.authenticator_class = "pam"


class CourseSpawner(LocalProcessSpawner):
    """A user's server as their Unix account, with the course's Jupyter config for their role."""

    @property
    def instructor(self) -> bool:
        return self.user.name in INSTRUCTORS

    def course_dir(self) -> str:
        home = pwd.getpwnam(self.user.name).pw_dir
        return os.environ.get("DIFFUSION_INTERNALS_COURSE_DIR", "~/diffusion-internals").replace("~", home, 1)

    def make_preexec_fn(self, name):
        setuid = super().make_preexec_fn(name)
        if not self.instructor:
            return setuid
        try:
            folders = delegate_cgroup(name)
        except OSError as error:  # the grader will then refuse to run and say why (README: the sandbox)
            self.log.warning("No delegated cgroup for %s (%s): make autograde needs root or UNSAFE=1", name, error)
            folders = []
        course = self.course_dir()

        def preexec():
            join_cgroup(folders)
            setuid()
            # The server runs in the course directory: nbgrader (the formgrader too) reads its nbgrader_config.py.
            with contextlib.suppress(OSError):
                os.chdir(course)

        return preexec

    def get_env(self):
        env = super().get_env()
        # Highest priority first: a student's config turns the formgrader off.
        config = (
            [HERE / "jupyter" / "everyone"]
            if self.instructor
            else [HERE / "jupyter" / "students", HERE / "jupyter" / "everyone"]
        )
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(str(path) for path in config)
        env["DIFFUSION_INTERNALS_EXCHANGE"] = EXCHANGE
        env["PATH"] = f"{ENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["DIFFUSION_INTERNALS_ENV_BIN"] = str(ENV_BIN)  # terminals put it first again (jupyter/everyone/bashrc)
        return env

    async def start(self):
        # Homes are where Unix permissions keep the class apart (notebooks, an instructor's solutions and gradebook).
        home = pwd.getpwnam(self.user.name).pw_dir
        if os.stat(home).st_mode & 0o077:
            raise RuntimeError(f"{home} is readable by other accounts: chmod 700 {home} (deploy/jupyterhub/README.md)")
        if self.instructor:
            self.notebook_dir = self.course_dir()
        return await super().start()


c.JupyterHub.spawner_class = CourseSpawner
c.Spawner.cmd = [str(ENV_BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
# Starting JupyterLab with nbgrader's extensions takes a few seconds on a busy 2-core server.
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
