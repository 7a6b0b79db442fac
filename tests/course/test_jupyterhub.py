"""The classroom loop on a real JupyterHub (deploy/jupyterhub/), with nbgrader's exchange, as each user.

The test creates Unix accounts for one instructor and three students (it must run as root: CI does), starts
JupyterHub with the course's config on 127.0.0.1 (its proxy is configurable-http-proxy from npm: `make hub`),
and drives the loop as each user would: the instructor in a terminal of their own Jupyter server (nbgrader's
commands and make), the students through the Assignments tab of theirs (nbgrader's assignment-list API) and the
contents API (saving their edited notebook). One student submits a correct notebook, one a wrong one, one a
correct one after the due date. Then: the scores, the late mark, the feedback each student fetched, and what a
student cannot read (another's submission or home, the exchange's inbound folder, the instructor's solutions,
the formgrader, the instructor's server).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from support import BIN, ROOT, load_check_dist, require_tools

from diffusion_internals.course.grading.solutions import solution_code, with_answers

pytestmark = pytest.mark.slow

HUB_DIR = ROOT / "deploy" / "jupyterhub"
COURSE_ID = "diffusion-internals"
ASSIGNMENT = "01_forward_process"
NOTEBOOK = "forward_process.ipynb"
INSTRUCTOR = "dih-teacher"
CORRECT, WRONG, LATE = "dih-ada", "dih-bo", "dih-cy"
STUDENTS = (CORRECT, WRONG, LATE)  # each logs in, fetches, edits and submits from their own server
BACKDATED = "dih-dee"  # on the roster too: only files a submission by hand, claiming a time before the due date
PASSWORD = "course-test-password"


def proxy_path() -> Path | None:
    found = shutil.which("configurable-http-proxy")
    local = Path(sys.prefix) / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
    return Path(found) if found else local if local.exists() else None


def hub_problem() -> str | None:
    if os.geteuid() != 0:
        return "the JupyterHub loop creates Unix accounts for its users: run it as root (.ci/run does)"
    if not shutil.which("useradd"):
        return "useradd is missing (Debian/Ubuntu: apt-get install -y passwd)"
    if proxy_path() is None:
        return "JupyterHub's proxy is not installed: make hub (its npm ci needs npm: sudo apt-get install -y npm)"
    if not shutil.which("bwrap"):
        return "bubblewrap is missing (sudo apt-get install -y bubblewrap)"
    return None


def free_port(pair: bool = False) -> int:
    """A free port on 127.0.0.1 (and the next one too when `pair`: the hub's API and the proxy's API)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair on 127.0.0.1")


def as_user(user: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, timeout=60)


def open_path_to(path: Path, changed: list[tuple[Path, int]]) -> None:
    """Let every account reach `path` (search permission on each parent), remembering the modes to restore."""
    for folder in reversed(Path(os.path.realpath(path)).parents):
        mode = folder.stat().st_mode & 0o7777
        if not mode & 0o001:
            changed.append((folder, mode))
            folder.chmod(mode | 0o001)


class Hub:
    """A running JupyterHub and the API calls the test makes to it as each user."""

    def __init__(self, url: str, env: dict[str, str], state: Path) -> None:
        self.url, self.env, self.state = url, env, state
        self.tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        if user not in self.tokens:
            result = subprocess.run(
                [str(BIN / "jupyterhub"), "token", "-f", str(HUB_DIR / "jupyterhub_config.py"), user],
                cwd=self.state,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, f"jupyterhub token {user}:\n{result.stderr[-3000:]}"
            self.tokens[user] = result.stdout.strip().splitlines()[-1]
        return self.tokens[user]

    def request(self, user: str, method: str, path: str, **kwargs):
        import requests

        headers = {"Authorization": f"token {self.token(user)}"}
        return requests.request(
            method, f"{self.url}{path}", headers=headers, timeout=300, allow_redirects=False, **kwargs
        )

    def start_server(self, user: str) -> None:
        response = self.request(user, "POST", f"/hub/api/users/{user}/server")
        assert response.status_code in (201, 202), f"starting {user}'s server: {response.status_code} {response.text}"

    def wait_ready(self, user: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.request(user, "GET", f"/hub/api/users/{user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server did not become ready in {timeout} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return (self.state / "hub.log").read_text(errors="replace")[-6000:]

    def assignments(self, user: str, action: str | None = None) -> list[dict]:
        """The Assignments tab: list, or fetch / submit / fetch_feedback and list."""
        data = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
        if action is None:
            response = self.request(user, "GET", f"/user/{user}/assignments", params={"course_id": COURSE_ID})
        else:
            response = self.request(user, "POST", f"/user/{user}/assignments/{action}", data=data)
        assert response.status_code == 200, f"{user} {action or 'list'}: {response.status_code} {response.text}"
        body = response.json()
        assert not (isinstance(body, dict) and body.get("success") is False), f"{user} {action}: {body['value']}"
        return body["value"] if isinstance(body, dict) else body

    def terminal(self, user: str, command: str, timeout: float = 900) -> str:
        """Run `command` in a terminal of the user's own Jupyter server; its output, asserting exit status 0."""
        name = self.request(user, "POST", f"/user/{user}/api/terminals").json()["name"]
        output = asyncio.run(self._terminal(user, name, command, timeout))
        self.request(user, "DELETE", f"/user/{user}/api/terminals/{name}")
        status = re.search(r"__STATUS_(\d+)__", output)
        assert status and status.group(1) == "0", f"{user}$ {command}\n{output[-6000:]}"
        return output

    async def _terminal(self, user: str, name: str, command: str, timeout: float) -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws_url = self.url.replace("http://", "ws://") + f"/user/{user}/terminals/websocket/{name}"
        request = HTTPRequest(ws_url, headers={"Authorization": f"token {self.token(user)}"})
        connection = await websocket_connect(request)
        # The status marker is printed with printf so that the terminal's echo of this line cannot match it.
        await connection.write_message(json.dumps(["stdin", f"{command}; printf '__STATUS_%s__\\n' $?\r"]))
        output, deadline = "", time.monotonic() + timeout
        while not re.search(r"__STATUS_\d+__", output):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = await asyncio.wait_for(connection.read_message(), timeout=left)
            if message is None:
                break
            kind, *content = json.loads(message)
            if kind == "stdout":
                output += content[0]
        connection.close()
        return output


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_tools(hub_problem())
    base = tmp_path_factory.mktemp("hub")
    base.chmod(0o755)
    state, exchange = base / "state", base / "exchange"
    exchange.mkdir()
    # As deploy/jupyterhub/README.md: everyone writes (nbgrader), nobody moves another's folder (the sticky bit),
    # and the course's folder is the instructor's before anyone else can make it.
    exchange.chmod(0o1777)
    roster = base / "roster.csv"
    roster.write_text(
        "id,first_name,last_name,email\n"
        + "".join(f"{s},{s[4:]},Student,{s}@example.org\n" for s in (*STUDENTS, BACKDATED))
    )
    changed: list[tuple[Path, int]] = []
    users_made: list[str] = []
    process = None
    try:
        for user in (INSTRUCTOR, *STUDENTS, BACKDATED):
            if subprocess.run(["id", user], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)
                users_made.append(user)
            Path(pwd.getpwnam(user).pw_dir).chmod(0o700)
        # The course's environment and its Python (here perhaps under /root) must be reachable by every account.
        for path in (Path(sys.prefix), Path(os.path.realpath(sys.executable)), ROOT, proxy_path(), base):
            open_path_to(path, changed)
        # ... but not its hidden tests: the shared checkout's solutions/ and history are closed (README, set-up).
        for private in (ROOT / "solutions", ROOT / ".git"):
            if private.exists():
                changed.append((private, private.stat().st_mode & 0o7777))
                private.chmod(0o700)
        (exchange / COURSE_ID).mkdir()
        shutil.chown(exchange / COURSE_ID, INSTRUCTOR, INSTRUCTOR)
        course = instructor_course(INSTRUCTOR)
        port, api_port = free_port(), free_port(pair=True)
        env = dict(os.environ)
        env.update(
            DIFFUSION_INTERNALS_HUB_INSTRUCTORS=INSTRUCTOR,
            DIFFUSION_INTERNALS_HUB_ROSTER=str(roster),
            DIFFUSION_INTERNALS_HUB_URL=f"http://127.0.0.1:{port}",
            DIFFUSION_INTERNALS_HUB_API_PORT=str(api_port),
            DIFFUSION_INTERNALS_HUB_STATE=str(state),
            DIFFUSION_INTERNALS_EXCHANGE=str(exchange),
            DIFFUSION_INTERNALS_COURSE_DIR=str(course),
            DIFFUSION_INTERNALS_HUB_AUTH="dummy",
            DIFFUSION_INTERNALS_HUB_PASSWORD=PASSWORD,
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        state.mkdir(mode=0o700)
        log = (state / "hub.log").open("w")
        process = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(HUB_DIR / "jupyterhub_config.py")],
            cwd=state,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        hub = Hub(f"http://127.0.0.1:{port}", env, state)
        wait_for_health(hub, process)
        hub.course, hub.exchange, hub.roster = course, exchange, roster
        yield hub
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        for user in (INSTRUCTOR, *STUDENTS, BACKDATED):
            subprocess.run(["pkill", "-9", "-u", user], capture_output=True)
        time.sleep(0.5)
        remove_delegated_cgroups()
        for user in users_made:
            subprocess.run(["userdel", "--remove", user], capture_output=True)
        for folder, mode in reversed(changed):
            folder.chmod(mode)


def wait_for_health(hub: Hub, process: subprocess.Popen, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterHub exited with {process.returncode}:\n{hub.log_tail()}")
        try:
            if requests.get(f"{hub.url}/hub/health", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"JupyterHub did not answer in {timeout} s:\n{hub.log_tail()}")


def remove_delegated_cgroups() -> None:
    for folder in Path("/sys/fs/cgroup").rglob(f"*user-{INSTRUCTOR}"):  # v1 and v2 names (delegate_cgroup)
        for child in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
            if child.is_dir():
                child.rmdir()
        folder.rmdir()


def instructor_course(user: str) -> Path:
    """The instructor's course directory: the course's tracked files, one assignment (this loop's), theirs alone.

    Copied with fresh times, as a clone has them: newer than the environment, which make must not reinstall."""
    home = Path(pwd.getpwnam(user).pw_dir)
    course = home / "diffusion-internals"
    keep = ("Makefile", "nbgrader_config.py", "pyproject.toml", "requirements/", "scripts/", "solutions/" + ASSIGNMENT)
    for name in load_check_dist().git_files(ROOT, "--cached", "--others", "--exclude-standard"):
        if name.startswith(keep) and (ROOT / name).is_file():
            target = course / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, target)
    subprocess.run(["chown", "-R", f"{user}:{user}", str(course)], check=True)
    return course


def edit(hub: Hub, user: str, answers: dict[str, str]) -> None:
    """The student's edit: their fetched notebook with these answers, saved through the contents API (as Lab does)."""
    path = f"/user/{user}/api/contents/{ASSIGNMENT}/{NOTEBOOK}"
    model = hub.request(user, "GET", path, params={"content": "1"}).json()
    nb = with_answers(nbformat.from_dict(model["content"]), answers)
    response = hub.request(user, "PUT", path, json={"type": "notebook", "format": "json", "content": nb})
    assert response.status_code == 200, f"{user} saving the notebook: {response.status_code} {response.text}"


def attack(hub: Hub, course: Path) -> None:
    """What a student might try on the exchange: each must fail, or be caught at collection."""
    exchange = hub.exchange
    moved = as_user(WRONG, "mv", str(exchange / COURSE_ID), str(exchange / "mine"))
    assert moved.returncode != 0 and (exchange / COURSE_ID).is_dir(), moved.stderr  # the sticky bit
    # A submission under another student's name, made with nbgrader itself (its --student option).
    victim = CORRECT
    env = [
        f"JUPYTER_CONFIG_PATH={HUB_DIR / 'jupyter' / 'students'}:{HUB_DIR / 'jupyter' / 'everyone'}",
        f"DIFFUSION_INTERNALS_EXCHANGE={exchange}",
        f"PATH={BIN}:/usr/bin:/bin",
    ]
    forged = subprocess.run(
        [
            "runuser",
            "-u",
            WRONG,
            "--",
            "env",
            *env,
            "bash",
            "-c",
            f"cd && nbgrader submit {ASSIGNMENT} --student={victim}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert forged.returncode == 0, forged.stderr[-2000:]  # nbgrader lets it through: collection must not
    # A submission made by hand after the due date, claiming a time long before it.
    release = exchange / COURSE_ID / "outbound" / ASSIGNMENT / NOTEBOOK
    folder = exchange / COURSE_ID / "inbound" / f"{BACKDATED}+{ASSIGNMENT}+2020-01-01 00:00:00.000000 UTC+handmade"
    stamp = "2020-01-01 00:00:00.000000 UTC"
    script = f"mkdir '{folder}' && cp '{release}' '{folder}/' && printf '{stamp}' > '{folder}/timestamp.txt'"
    script += f" && head -c 16 /dev/urandom | base64 > '{folder}/submission_secret.txt'"  # as nbgrader submit
    handmade = as_user(BACKDATED, "bash", "-c", script)
    assert handmade.returncode == 0, handmade.stderr
    answers = solution_code(course / "solutions" / ASSIGNMENT / NOTEBOOK)
    nb = with_answers(nbformat.read(folder / NOTEBOOK, as_version=4), answers)
    nbformat.write(nb, folder / NOTEBOOK)  # as root, into the student's own file: the answers are not the point
    os.chown(folder / NOTEBOOK, pwd.getpwnam(BACKDATED).pw_uid, pwd.getpwnam(BACKDATED).pw_gid)


def test_the_class_loop_on_a_real_jupyterhub(hub):
    import requests

    course = hub.course
    # Logging in: the hub admits the class and no one else.
    for user, expected in ((CORRECT, 302), ("dih-mallory", 403)):
        session = requests.Session()
        session.get(f"{hub.url}/hub/login", timeout=30)
        xsrf = session.cookies.get("_xsrf", "")
        login = session.post(
            f"{hub.url}/hub/login?_xsrf={xsrf}",
            data={"username": user, "password": PASSWORD, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=60,
        )
        assert login.status_code == expected, f"login as {user}: {login.status_code}"

    for user in (INSTRUCTOR, *STUDENTS):
        hub.start_server(user)
    for user in (INSTRUCTOR, *STUDENTS):
        hub.wait_ready(user)

    # The instructor: the formgrader is theirs, students get none and cannot reach the instructor's server.
    formgrader = hub.request(INSTRUCTOR, "GET", f"/user/{INSTRUCTOR}/formgrader/api/assignments")
    assert formgrader.status_code == 200, formgrader.text
    assert hub.request(CORRECT, "GET", f"/user/{CORRECT}/formgrader/api/assignments").status_code == 404
    assert hub.request(CORRECT, "GET", f"/user/{INSTRUCTOR}/api/contents").status_code == 403

    # Release: generate the student version (make release) and put it in the exchange.
    hub.terminal(INSTRUCTOR, f"cd {course} && make release && nbgrader release_assignment {ASSIGNMENT}")
    # The formgrader works on the instructor's course directory (their server's root): it lists the release.
    released = hub.request(INSTRUCTOR, "GET", f"/user/{INSTRUCTOR}/formgrader/api/assignments").json()
    assert [(a["name"], a["status"]) for a in released] == [(ASSIGNMENT, "released")], released
    for user in STUDENTS:
        listed = hub.assignments(user)
        assert [(a["assignment_id"], a["status"]) for a in listed] == [(ASSIGNMENT, "released")], listed
        hub.assignments(user, "fetch")
        fetched = Path(pwd.getpwnam(user).pw_dir) / ASSIGNMENT / NOTEBOOK
        assert fetched.exists() and fetched.stat().st_uid == pwd.getpwnam(user).pw_uid

    answers = solution_code(course / "solutions" / ASSIGNMENT / NOTEBOOK)
    wrong = dict(answers)
    wrong[sorted(wrong)[0]] = "raise NotImplementedError()"  # one function left unwritten
    edit(hub, CORRECT, answers)
    edit(hub, WRONG, wrong)
    hub.assignments(CORRECT, "submit")
    hub.assignments(WRONG, "submit")
    time.sleep(1.1)
    due = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    time.sleep(1.1)
    edit(hub, LATE, answers)
    listed = hub.assignments(LATE, "submit")
    assert [a["student_id"] for a in listed if a["status"] == "submitted"] == [LATE], listed
    attack(hub, course)

    # What a student cannot read.
    inbound = hub.exchange / COURSE_ID / "inbound"
    submissions = sorted(p.name for p in inbound.iterdir())
    assert len(submissions) == 5 and all(len(name.split("+")) == 4 for name in submissions), submissions
    for target in (
        inbound,  # 733: no listing, so another's submission (its folder name ends in a random string) is not found
        Path(pwd.getpwnam(CORRECT).pw_dir) / ASSIGNMENT / NOTEBOOK,  # another student's home
        course / "solutions" / ASSIGNMENT / NOTEBOOK,  # the instructor's source: solutions and hidden tests
        course / "gradebook.db",
        ROOT / "solutions",  # the shared checkout's
    ):
        denied = as_user(WRONG, "cat" if target.suffix else "ls", str(target))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (target, denied.stdout[:300])

    # Collect, set the due date, grade in the sandbox, feedback.
    collected = hub.terminal(
        INSTRUCTOR,
        f'cd {course} && nbgrader db assignment add {ASSIGNMENT} --duedate="{due}" && nbgrader collect {ASSIGNMENT}',
    )
    # The submission filed under another's name is not collected; the backdated one is, at its real time.
    assert f"claims to be {CORRECT}'s submission but {WRONG} made it" in collected, collected[-3000:]
    assert f"{BACKDATED}+{ASSIGNMENT}+2020-" in collected and "using the latter" in collected, collected[-3000:]
    graded = hub.terminal(INSTRUCTOR, f"cd {course} && make autograde JOBS=2 ASSIGNMENT={ASSIGNMENT}")
    assert "UNSAFE" not in graded and "Nothing needs your attention" in graded, graded[-4000:]
    hub.terminal(INSTRUCTOR, f"cd {course} && make feedback && nbgrader release_feedback {ASSIGNMENT}")
    for user in STUDENTS:
        hub.assignments(user, "fetch_feedback")
        html = list((Path(pwd.getpwnam(user).pw_dir) / ASSIGNMENT / "feedback").glob(f"*/{NOTEBOOK[:-6]}.html"))
        assert len(html) == 1, f"{user} fetched {html}"
        assert html[0].stat().st_uid == pwd.getpwnam(user).pw_uid

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        results = {}
        for user in (*STUDENTS, BACKDATED):
            submission = gradebook.find_submission(ASSIGNMENT, user)
            automatic = sum(g.max_score for n in submission.notebooks for g in n.grades if g.auto_score is not None)
            results[user] = (submission.score, automatic, submission.total_seconds_late)
    assert results[CORRECT][0] == results[CORRECT][1] > 0 and results[CORRECT][2] == 0, results
    assert 0 < results[WRONG][0] < results[WRONG][1] and results[WRONG][2] == 0, results
    assert results[LATE][0] == results[LATE][1] and results[LATE][2] > 0, results
    assert results[BACKDATED][0] == results[BACKDATED][1] and results[BACKDATED][2] > 0, results
