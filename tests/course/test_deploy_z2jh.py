"""The Zero to JupyterHub deployment (deploy/zero-to-jupyterhub/) is configuration the chart and the course accept.

No cluster and no Helm chart can be reached here. What always runs: values.yaml loads; every key path in it is one of
the chart's (chart-keys.yaml, taken from the chart's values schema: a typo such as `singleuser.profilelist` fails);
every class and trait that hub.config and hub.extraConfig set is one JupyterHub, ltiauthenticator or KubeSpawner
defines (the chart passes hub.config on unchecked); the Python it embeds compiles and, run against stand-ins,
points nbgrader at the course's exchange, gives only instructors the formgrader and each user a uid of their own,
and admits only LTI launches from the course's context; the exchange is mounted where nbgrader looks in every
profile; the GPU profile asks for a GPU. With a chart (Z2JH_CHART=folder or .tgz) the values are also validated
against its values.schema.json, and with `helm` on PATH rendered by `helm template`.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from support import ROOT, load_file
from traitlets.config import Config

DEPLOY = ROOT / "deploy" / "zero-to-jupyterhub"
VALUES = yaml.safe_load((DEPLOY / "values.yaml").read_text())
CHART_KEYS = set(yaml.safe_load((DEPLOY / "chart-keys.yaml").read_text())["keys"])
INSTRUCTORS = "instructors"
GPU_PROFILE = "Stable Diffusion projects (GPU)"
FORMGRADER = "nbgrader.server_extensions.formgrader"
# KubeSpawner.profile_list: the keys of a profile, and the KubeSpawner traits this file's profiles override
# (jupyterhub/kubespawner, kubespawner/spawner.py: profile_list, cpu_limit ... extra_resource_limits, node_selector).
PROFILE_KEYS = {"display_name", "slug", "description", "default", "kubespawner_override", "profile_options"}
OVERRIDE_KEYS = {
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "tolerations",
    "image",
    "volumes",
    "volume_mounts",
    "environment",
}
# Configurable traits of the classes hub.config and hub.extraConfig set that are not installed here (JupyterHub's own
# come from the installed jupyterhub, 6.x; the chart's hub runs 5.x). LTI13Authenticator: jupyterhub/ltiauthenticator,
# ltiauthenticator/lti13/auth.py, its own traits and OAuthenticator's authorize_url (oauthenticator/oauth2.py) that it
# reads; the rest of its traits are Authenticator's. KubeSpawner: jupyterhub/kubespawner, kubespawner/spawner.py,
# the traits this file and its profiles set beyond Spawner's.
LTI13_TRAITS = {
    "authorize_url",
    "client_id",
    "issuer",
    "jwks_algorithms",
    "jwks_endpoint",
    "tool_description",
    "tool_name",
    "username_key",
}
KUBESPAWNER_TRAITS = {
    "extra_resource_guarantees",
    "extra_resource_limits",
    "fs_gid",
    "gid",
    "image",
    "node_selector",
    "profile_list",
    "storage_capacity",
    "tolerations",
    "uid",
    "volume_mounts",
    "volumes",
}
LTI_CONTEXT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/context"


chart_keys = load_file(DEPLOY / "chart_keys.py")


def course_id() -> str:
    """c.CourseDirectory.course_id in the course's nbgrader_config.py, read without running it."""
    for node in ast.walk(ast.parse((ROOT / "nbgrader_config.py").read_text())):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "c.CourseDirectory.course_id":
            return ast.literal_eval(node.value)
    raise AssertionError("nbgrader_config.py sets no c.CourseDirectory.course_id")


def run_config(source: str, name: str) -> tuple[Config, list[str]]:
    """Run a traitlets config file's source with stand-ins for get_config and load_subconfig."""
    c, subconfigs = Config(), []
    code = compile(source, name, "exec")
    exec(code, {"c": c, "get_config": lambda: c, "load_subconfig": subconfigs.append})
    return c, subconfigs


def extra_files() -> dict[str, dict]:
    return VALUES["singleuser"]["extraFiles"]


def extra_file(mount_path: str) -> dict:
    matches = [entry for entry in extra_files().values() if entry["mountPath"] == mount_path]
    assert len(matches) == 1, f"expected one singleuser.extraFiles entry at {mount_path}, found {len(matches)}"
    return matches[0]


def exchange_root() -> str:
    c, _ = run_config(extra_file("/etc/jupyter/nbgrader_config.py")["stringData"], "nbgrader_config.py")
    return c.Exchange.root


def hub_config() -> Config:
    """hub.extraConfig run as the hub runs it: in order of its keys, on one config object."""
    c = Config()
    for name, source in sorted(VALUES["hub"]["extraConfig"].items()):
        exec(compile(source, name, "exec"), {"c": c})
    return c


def configurable_traits() -> dict[str, set[str]]:
    """Each class this file configures and its configurable traits: the installed JupyterHub's, the lists above."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.spawner import Spawner

    authenticator = set(Authenticator.class_trait_names(config=True))
    return {
        "JupyterHub": set(JupyterHub.class_trait_names(config=True)),
        "Authenticator": authenticator,
        "LTI13Authenticator": authenticator | LTI13_TRAITS,
        "KubeSpawner": set(Spawner.class_trait_names(config=True)) | KUBESPAWNER_TRAITS,
    }


def unknown_traits(config: Mapping) -> list[str]:
    """The Class.trait names a hub config sets that no class above has: a misspelled class or trait."""
    known, unknown = configurable_traits(), []
    for name, traits in config.items():
        if name not in known:
            unknown.append(f"{name} (not a class this file configures)")
            continue
        unknown += [f"{name}.{trait}" for trait in traits if trait not in known[name]]
    return unknown


def spawner(user_id: int, *groups: str) -> SimpleNamespace:
    """A stand-in for a KubeSpawner: a user with an id and groups, and the environment the chart configures."""
    user = SimpleNamespace(id=user_id, name=f"user{user_id}", groups=[SimpleNamespace(name=g) for g in groups])
    return SimpleNamespace(user=user, environment={"SHARED": "1"}, storage_capacity="10Gi")


# --- (c) structure, always ---------------------------------------------------------------------------------------


def test_every_key_is_a_chart_key():
    unknown = chart_keys.unknown_keys(VALUES, CHART_KEYS)
    assert not unknown, f"values.yaml uses keys the chart does not know (chart-keys.yaml): {unknown}"


@pytest.mark.parametrize(
    ("path", "known"),
    [
        ("singleuser.profileList", True),
        ("singleuser.profilelist", False),  # the typo this check exists for
        ("singleuser.extraFiles.any-name.mountPath", True),
        ("singleuser.extraFiles.any-name.mountpath", False),
        ("hub.config.LTI13Authenticator.issuer", True),  # hub.config.**: passed on; the trait check below checks it
        ("hub.extraConfigs", False),
        ("singleuser.storage.extraVolumes", True),
    ],
)
def test_the_key_check_rejects_unknown_keys(path, known):
    assert chart_keys.allowed(tuple(path.split(".")), CHART_KEYS) is known


def test_hub_config_sets_only_traits_its_classes_have():
    assert not unknown_traits(VALUES["hub"]["config"]), "hub.config"
    assert not unknown_traits(hub_config()), "hub.extraConfig"
    assert OVERRIDE_KEYS <= configurable_traits()["KubeSpawner"], "kubespawner_override keys are KubeSpawner traits"


@pytest.mark.parametrize(
    ("config", "unknown"),
    [
        ({"LTI13Authenticator": {"username_key": "sub", "issuer": "x"}}, []),
        ({"LTI13Authenticator": {"usernme_key": "sub"}}, ["LTI13Authenticator.usernme_key"]),
        ({"Authenticator": {"allow_al": True}}, ["Authenticator.allow_al"]),
        ({"JupyterHub": {"load_group": {}}}, ["JupyterHub.load_group"]),
        ({"LTI13Authenticater": {"issuer": "x"}}, ["LTI13Authenticater (not a class this file configures)"]),
    ],
)
def test_the_trait_check_rejects_misspelled_hub_config(config, unknown):
    ((name, traits),) = config.items()
    assert all(chart_keys.allowed(("hub", "config", name, trait), CHART_KEYS) for trait in traits), "the chart's check"
    assert unknown_traits(config) == unknown


def test_key_paths_are_derived_from_a_schema_as_documented():
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "hub": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"config": {"type": "object", "additionalProperties": True}},
            },
            "labels": {
                "type": "object",
                "additionalProperties": False,
                "patternProperties": {".*": {"type": "string"}},
            },
            "secret": {"type": "object", "if": {}, "then": {"additionalProperties": False, "properties": {"x": {}}}},
            "list": {"type": "array"},
        },
    }
    assert chart_keys.schema_key_paths(schema) == {
        "hub",
        "hub.config",
        "hub.config.**",
        "labels",
        "labels.*",
        "secret",
        "secret.x",
        "secret.**",  # an object without additionalProperties is open, as in JSON schema
        "list",
    }


def test_profiles_use_kubespawner_keys():
    for profile in VALUES["singleuser"]["profileList"]:
        assert set(profile) <= PROFILE_KEYS, f"{profile['display_name']}: unknown keys {set(profile) - PROFILE_KEYS}"
        override = profile.get("kubespawner_override", {})
        assert set(override) <= OVERRIDE_KEYS, f"{profile['display_name']}: unknown {set(override) - OVERRIDE_KEYS}"
    defaults = [p for p in VALUES["singleuser"]["profileList"] if p.get("default")]
    assert len(defaults) == 1, "exactly one profile is the default"


def test_extra_files_python_compiles_and_names_the_course_and_its_exchange():
    python = {key: entry for key, entry in extra_files().items() if entry["mountPath"].endswith(".py")}
    assert python, "no nbgrader config among singleuser.extraFiles"
    for key, entry in python.items():
        run_config(entry["stringData"], key)  # compiles and runs
    c, _ = run_config(extra_file("/etc/jupyter/nbgrader_config.py")["stringData"], "nbgrader_config.py")
    assert c.CourseDirectory.course_id == course_id()
    assert c.Exchange.root == "/srv/nbgrader/exchange"


def test_the_exchange_is_mounted_where_nbgrader_looks_in_every_profile():
    storage = VALUES["singleuser"]["storage"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in storage["extraVolumes"]}
    manifests = list(yaml.safe_load_all((DEPLOY / "exchange-pvc.yaml").read_text()))
    (claim,) = [m for m in manifests if m["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    exchange = [m for m in storage["extraVolumeMounts"] if claims.get(m["name"]) == claim["metadata"]["name"]]
    assert [m["mountPath"] for m in exchange] == [exchange_root()]
    for profile in VALUES["singleuser"]["profileList"]:
        override = profile.get("kubespawner_override", {})
        mounts = override.get("volume_mounts", storage["extraVolumeMounts"])
        assert any(m["mountPath"] == exchange_root() for m in mounts), f"{profile['display_name']} loses the exchange"


def test_the_gpu_profile_asks_for_one_gpu_and_more_memory():
    profiles = {p["display_name"]: p for p in VALUES["singleuser"]["profileList"]}
    override = profiles[GPU_PROFILE]["kubespawner_override"]
    assert override["extra_resource_limits"] == {"nvidia.com/gpu": "1"}

    def gigabytes(text: str) -> float:
        return float(text.rstrip("G"))

    assert gigabytes(override["mem_limit"]) > gigabytes(VALUES["singleuser"]["memory"]["limit"])
    others = [p for name, p in profiles.items() if name != GPU_PROFILE]
    assert all("nvidia.com/gpu" not in str(p) for p in others), "only the GPU profile asks for a GPU"


def test_only_instructors_get_the_formgrader():
    assert "users" in VALUES["hub"]["config"]["JupyterHub"]["load_groups"][INSTRUCTORS]  # JupyterHub >= 3.2's form
    hook = hub_config().KubeSpawner.pre_spawn_hook
    instructor, student = spawner(1, INSTRUCTORS), spawner(2, "students")
    hook(instructor)
    hook(student)
    config_dir = instructor.environment["JUPYTER_CONFIG_PATH"]
    assert "JUPYTER_CONFIG_PATH" not in student.environment
    assert student.environment == {"SHARED": "1"}, "the hook changed a student's environment"
    # The instructor's config folder turns the formgrader on and points nbgrader at the course directory ...
    server = extra_file(f"{config_dir}/jupyter_server_config.json")["data"]
    assert server["ServerApp"]["jpserver_extensions"][FORMGRADER] is True
    lab = extra_file(f"{config_dir}/labconfig/page_config.json")["data"]["disabledExtensions"]
    assert lab == {"@jupyter/nbgrader:formgrader": False, "@jupyter/nbgrader:create-assignment": False}
    c, subconfigs = run_config(extra_file(f"{config_dir}/nbgrader_config.py")["stringData"], "instructor")
    assert subconfigs == [f"{c.CourseDirectory.root}/nbgrader_config.py"]
    assert c.CourseDirectory.root.startswith(VALUES["singleuser"]["storage"]["homeMountPath"] + "/")
    # ... while the image everyone starts from has both off (the student view).
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"jupyter server extension disable --sys-prefix {FORMGRADER}" in dockerfile
    assert (
        "labextension disable --level=sys_prefix @jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment"
        in (dockerfile)
    )
    # A user who leaves the group loses it at the next start.
    instructor.user.groups = []
    hook(instructor)
    assert "JUPYTER_CONFIG_PATH" not in instructor.environment


def test_each_user_runs_under_a_uid_of_their_own():
    c = hub_config()
    uids = [c.KubeSpawner.uid(spawner(user_id)) for user_id in range(1, 200)]
    assert len(set(uids)) == len(uids)
    assert min(uids) > 65535 and c.KubeSpawner.gid == 100  # clear of system and image uids; group `users`
    assert VALUES["singleuser"]["allowPrivilegeEscalation"] is False  # start.sh's passwd entry grants nothing


def test_only_launches_from_the_course_context_log_in():
    """JupyterHub's own login path (Authenticator.get_authenticated_user) with extraConfig's post_auth_hook."""
    from jupyterhub.auth import Authenticator
    from tornado.web import HTTPError

    hook = hub_config().Authenticator.post_auth_hook
    course = hook.__globals__["COURSE_CONTEXT_ID"]
    assert VALUES["hub"]["config"]["LTI13Authenticator"]["username_key"] == "sub"

    class Launch(Authenticator):
        """LTI13Authenticator.authenticate's return: the username and the launch's id_token as auth_state."""

        async def authenticate(self, handler, data):
            return {"name": data["sub"], "auth_state": data}

    login = Launch(allow_all=True, post_auth_hook=hook, log=logging.getLogger("z2jh-test"))
    admitted = asyncio.run(login.get_authenticated_user(None, {"sub": "u1", LTI_CONTEXT_CLAIM: {"id": course}}))
    assert admitted["name"] == "u1"
    for claims in ({"sub": "u2", LTI_CONTEXT_CLAIM: {"id": "another-course"}}, {"sub": "u3"}):
        with pytest.raises(HTTPError) as refused:
            asyncio.run(login.get_authenticated_user(None, claims))
        assert refused.value.status_code == 403


def test_the_authenticator_is_a_choice_not_the_dummy():
    authenticator = VALUES["hub"]["config"]["JupyterHub"]["authenticator_class"]
    assert authenticator and "dummy" not in authenticator.lower()


def test_the_image_is_the_course_environment():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "--constraint /tmp/constraints.txt '.[course]'" in dockerfile
    assert "bubblewrap" in dockerfile
    makefile = (ROOT / "Makefile").read_text()  # `make setup` registers the course's kernel: the image does the same
    name = re.search(r"^KERNEL\s*:=\s*(\S+)", makefile, re.M).group(1)
    display = re.search(r"ipykernel install --sys-prefix --name \$\(KERNEL\) --display-name (\"[^\"]+\")", makefile)
    assert f"ipykernel install --sys-prefix --name {name} --display-name {display.group(1)}" in dockerfile
    grading_kernel = "python -m diffusion_internals.course.grading.kernel install"
    assert grading_kernel in dockerfile
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert not any("solutions" in path or path == "." for path in copied), (
        f"the image must not hold solutions/: {copied}"
    )


# --- (b) against a real chart, when one is at hand -----------------------------------------------------------------


def chart_files() -> dict[str, str]:
    """values.yaml and values.schema.json of the chart in Z2JH_CHART (a chart folder or its .tgz)."""
    location = os.environ.get("Z2JH_CHART")
    if not location:
        pytest.skip(
            "no chart: set Z2JH_CHART to the jupyterhub chart (helm pull jupyterhub/jupyterhub --version 4.4.0 "
            "--untar) to validate values.yaml against its values.schema.json"
        )
    path, wanted = Path(location), ("values.yaml", "values.schema.json")
    if path.is_dir():
        return {name: (path / name).read_text() for name in wanted}
    with tarfile.open(path) as archive:
        return {name: archive.extractfile(f"jupyterhub/{name}").read().decode() for name in wanted}


def merged(defaults: dict, values: dict) -> dict:
    """Helm's merge of user values over a chart's defaults: mappings merge, everything else is replaced."""
    out = dict(defaults)
    for key, value in values.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_values_validate_against_the_charts_schema():
    import jsonschema

    files = chart_files()
    schema = json.loads(files["values.schema.json"])
    jsonschema.validate(merged(yaml.safe_load(files["values.yaml"]), VALUES), schema)
    unknown = chart_keys.unknown_keys(VALUES, chart_keys.schema_key_paths(schema))
    assert not unknown, f"keys this chart does not know: {unknown}"


def test_helm_template_renders_the_values():
    location = os.environ.get("Z2JH_CHART")
    helm = shutil.which("helm")
    if not (location and helm):
        pytest.skip("needs Z2JH_CHART (the jupyterhub chart, folder or .tgz) and `helm` on PATH to run helm template")
    rendered = subprocess.run(
        [helm, "template", "diffusion-internals", location, "--values", str(DEPLOY / "values.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc}
    assert {"Deployment", "Secret", "ConfigMap"} <= kinds
