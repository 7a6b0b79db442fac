"""The sandbox one submission runs in: bubblewrap namespaces plus a cgroup for its limits.

Each submission gets its own:

* filesystem view (bubblewrap): the system's /usr, /lib and /etc, this Python and its virtual
  environment and the course package, all read-only; a private, size-capped writable home (its
  working folder) and /tmp; a fresh /proc and a minimal /dev. Nothing else exists in it: no
  solutions/, gradebook, submitted/ or autograded/ folders, no course config, no other student.
* namespaces: no network (only a loopback of its own), its own process tree (when it ends, the
  kernel kills every process it started, detached ones included), no new user namespaces.
* cgroup: a memory limit and a process limit for all of its processes together (cgroup v2, or the
  v1 memory and pids controllers), removed when it ends. Where the grader cannot create cgroups,
  `limits_available()` says why and `make autograde` refuses to run unless told `UNSAFE=1`.
* address-space limit per process (`RLIMIT_AS`, CPU grading only: CUDA needs a large address space,
  so the GPU path relies on the cgroup alone) and a file-size limit.

bubblewrap comes from Debian's package (`apt-get install bubblewrap`; `.ci/run` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import sysconfig
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Limits",
    "Cgroup",
    "bwrap_path",
    "command",
    "delegate_cgroup",
    "gpu_devices",
    "join_cgroup",
    "limits_available",
    "sandbox_problem",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
# What a delegated cgroup's user owns (the kernel's cgroup-v2 delegation model; v1 reads cgroup.procs and tasks).
DELEGATED_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: sudo apt-get install -y bubblewrap)"


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Times in seconds, sizes in bytes."""

    cell_timeout: float = 300.0
    notebook_timeout: float = 1800.0
    memory: int = 8 * 2**30
    processes: int = 256
    disk: int = 512 * 2**20  # its writable home and /tmp together
    output: int = 1 * 2**20  # output kept per notebook
    threads: int = 1  # torch / BLAS threads inside the sandbox
    gpu: bool = False

    def __post_init__(self) -> None:
        for name in ("cell_timeout", "notebook_timeout", "memory", "processes", "disk", "output", "threads"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value!r}")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


class Cgroup:
    """A cgroup holding one submission's processes, with a memory and a process limit."""

    def __init__(self, memory: int, processes: int) -> None:
        name = f"diffusion-internals-{uuid.uuid4().hex[:12]}"
        self.dirs: list[Path] = []
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():  # v2 (unified)
                folder = _v2_parent() / name
                folder.mkdir()
                self.dirs = [folder]
                (folder / "memory.max").write_text(str(memory))
                if (folder / "memory.swap.max").exists():
                    (folder / "memory.swap.max").write_text("0")
                (folder / "pids.max").write_text(str(processes))
            else:  # v1: the memory and pids hierarchies, each under this process's own cgroup (its limits still apply)
                memory_dir, pids_dir = _v1_parent("memory") / name, _v1_parent("pids") / name
                memory_dir.mkdir()
                self.dirs.append(memory_dir)
                pids_dir.mkdir()
                self.dirs.append(pids_dir)
                (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
                swap = memory_dir / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    with contextlib.suppress(OSError):  # swap accounting off: the memory limit still holds
                        swap.write_text(str(memory))
                (pids_dir / "pids.max").write_text(str(processes))
        except OSError:
            self.kill_and_remove()
            raise

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def out_of_memory(self) -> bool:
        """Whether the kernel killed a process of this cgroup for memory."""
        for folder in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                path = folder / name
                if path.exists():
                    for line in path.read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value or 0) > 0:
                            return True
        return False

    def kill_and_remove(self) -> None:
        for folder in self.dirs:
            for _ in range(50):
                pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()] if folder.exists() else []
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
                import time

                time.sleep(0.02)
            try:
                folder.rmdir()
            except OSError:
                pass


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path for a v1 controller ("" for the v2 unified hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


def _v1_parent(controller: str) -> Path:
    """Where to create a submission's v1 cgroup: under this process's own, so that its limits still apply."""
    here = CGROUP_ROOT / controller / _own_cgroup(controller).lstrip("/")
    return here if os.access(here, os.W_OK) else CGROUP_ROOT / controller


def _v2_parent() -> Path:
    """Where to create a submission's v2 cgroup, with the memory and pids controllers enabled for its children.

    Under this process's own cgroup when it may write there (a systemd scope with Delegate=yes, or
    root); v2 lets a cgroup hand controllers to children only while it holds no process itself, so
    this process first moves into a leaf of its own ("grader-<pid>") when it has to.
    """
    here = CGROUP_ROOT / _own_cgroup("").lstrip("/")
    wanted = {"memory", "pids"}
    # Without root: the nearest cgroup delegated to this user (delegate_cgroup, or systemd's Delegate=yes) that
    # already hands both controllers to its children (its own leaf holds the processes).
    for folder in (here, *here.parents) if os.geteuid() != 0 else ():
        if not folder.is_relative_to(CGROUP_ROOT) or not os.access(folder, os.W_OK):
            break
        if wanted <= set((folder / "cgroup.subtree_control").read_text().split()):
            return folder
    parent = here if os.access(here, os.W_OK) else CGROUP_ROOT
    if not wanted <= set((parent / "cgroup.subtree_control").read_text().split()):
        try:
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:  # busy: processes live in parent itself; move this one into a leaf, then enable
            leaf = parent / f"grader-{os.getpid()}"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
    return parent


def delegate_cgroup(user: str) -> list[Path]:
    """As root: cgroups owned by `user`, in which that user's grader can create a limited cgroup per submission.

    Returns the folders a process joins (`join_cgroup`) so that the grader it starts runs sandboxed without root:
    the course's JupyterHub starts each instructor's server in them (deploy/jupyterhub/jupyterhub_config.py).
    v1: a folder in the memory and in the pids hierarchy (under this process's own cgroup, whose limits still
    apply). v2: /sys/fs/cgroup/diffusion-internals/user-<user> with both controllers handed to its children, and
    a leaf `server` in it for the processes: v2 lets only a cgroup without processes hand controllers on, and the
    root cgroup is the one place exempt from that whatever else the service that runs this (a systemd unit holding
    the hub and its proxy) keeps in its own. As the kernel's delegation model says, the user owns the folders and
    their cgroup.procs, cgroup.threads and cgroup.subtree_control, never the limits set on them.
    """
    import pwd

    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"user must be an existing account, got {user!r}") from None
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        base = CGROUP_ROOT / "diffusion-internals"
        base.mkdir(exist_ok=True)
        (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
        (base / "cgroup.subtree_control").write_text("+memory +pids")
        folder = base / f"user-{user}"
        folder.mkdir(exist_ok=True)
        (folder / "cgroup.subtree_control").write_text("+memory +pids")
        leaf = folder / "server"
        leaf.mkdir(exist_ok=True)
        owned, joined = [folder, leaf], [leaf]
    else:
        joined = [_v1_parent(controller) / f"diffusion-internals-user-{user}" for controller in ("memory", "pids")]
        for folder in joined:
            folder.mkdir(exist_ok=True)
        owned = joined
    for folder in owned:
        for path in (folder, *(folder / name for name in DELEGATED_FILES)):
            if path.exists():
                os.chown(path, account.pw_uid, account.pw_gid)
    return joined


def join_cgroup(folders: list[Path]) -> None:
    """Move this process into each of `folders` (before it drops root, in a spawner's preexec function)."""
    for folder in folders:
        fd = os.open(folder / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)


def limits_available() -> str | None:
    """None if this machine can enforce the per-submission limits, else why not (in words)."""
    if bwrap_path() is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    try:
        Cgroup(2**30, 16).kill_and_remove()
    except OSError as error:
        return (
            f"cannot create a cgroup for the memory and process limits ({error}); run the grader as root "
            "or with a delegated cgroup (for example `systemd-run --user --scope -p Delegate=yes make autograde`)"
        )
    return None


def sandbox_problem() -> str | None:
    """None if a trivial program runs in the sandbox, else bubblewrap's complaint."""
    import subprocess

    if bwrap_path() is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    try:
        run = subprocess.run(command(Limits(), [sys.executable, "-c", "print(1)"]), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if run.returncode == 0 else run.stderr.decode(errors="replace").strip()[-500:]


def gpu_devices() -> list[str]:
    """The NVIDIA device files a GPU sandbox needs (/dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm, ...)."""
    return [str(p) for p in sorted(Path("/dev").glob("nvidia*"))]


def _read_only_paths() -> list[str]:
    """The system and this Python, read-only: everything a submission's code may import or read."""
    import diffusion_internals

    paths = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sysconfig.get_paths()["purelib"]]
    paths.append(str(Path(diffusion_internals.__file__).resolve().parent))  # the package (an editable install's source)
    paths += [
        p for p in sys.path if p and Path(p).is_dir() and not Path(p).resolve().is_relative_to(Path.cwd().resolve())
    ]
    seen, out = set(), []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.exists(real) and real not in seen and not any(real.startswith(s + "/") for s in seen):
            seen.add(real)
            out.append(real)
    return sorted(out, key=len)


def command(limits: Limits, argv: list[str]) -> list[str]:
    """The bwrap command line running argv in a fresh sandbox (its home and /tmp are size-capped tmpfs)."""
    cmd = [
        bwrap_path() or "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "--die-with-parent",
        "--new-session",
        "--disable-userns",
    ]
    cmd += ["--cap-drop", "ALL"] if os.geteuid() == 0 else []
    # /tmp first: the read-only binds below may lie under it (a course cloned into /tmp) and must stay visible.
    cmd += ["--size", str(limits.disk // 2), "--tmpfs", "/tmp"]
    for path in _read_only_paths():
        cmd += ["--ro-bind", path, path]
    for link in ("bin", "sbin", "lib", "lib64", "lib32"):  # merged /usr: /bin -> usr/bin
        if os.path.islink(f"/{link}"):
            cmd += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    if limits.gpu:
        for device in gpu_devices():
            cmd += ["--dev-bind", device, device]
    cmd += ["--size", str(limits.disk // 2), "--tmpfs", "/home/student", "--chdir", "/home/student"]
    cmd += ["--clearenv"]
    env = {
        "HOME": "/home/student",
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "DIFFUSION_INTERNALS_GRADING": "1",
        "OMP_NUM_THREADS": str(limits.threads),
        "MKL_NUM_THREADS": str(limits.threads),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }
    if os.environ.get("PYTHONPATH"):  # packages installed beside the environment (the GPU check's wheelhouse)
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]  # its folders are on sys.path, so bound read-only above
    if limits.gpu and "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + ["--"] + argv
