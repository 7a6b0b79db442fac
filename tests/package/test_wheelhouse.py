"""scripts/wheelhouse.py and requirements/gpu-wheelhouse.txt (`make wheelhouse`), without the network.

The pins are checked against their oracles: requirements/constraints.txt (the tested versions), pyproject.toml (this
package's version) and the script's IMAGE (what the GPU machine has, never carried). The folder checks run on a
wheelhouse of empty stand-in files.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
from support import ROOT

spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "scripts" / "wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(spec)
sys.modules["wheelhouse"] = wheelhouse  # its dataclass looks its module up there
spec.loader.exec_module(wheelhouse)

PINS = wheelhouse.read_pins()
CONSTRAINTS = wheelhouse.read_constraints()
NAME, VERSION = wheelhouse.project()


def test_every_line_is_a_pin_with_its_reason():
    lines = [
        line.strip()
        for line in wheelhouse.REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines and len(lines) == len(PINS)
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][^\s#]*\s+#\s*\(\w\).+", line), (
            f"expected `name==version  # (step) why`, got {line!r}"
        )


def test_pins_are_the_constraints_versions_and_the_packages_own():
    for pin in PINS:
        if pin.key == wheelhouse.normalize(NAME):
            assert pin.version == VERSION, f"{pin.name}=={pin.version}, pyproject.toml says {VERSION}"
        else:
            assert pin.key in CONSTRAINTS, f"{pin.name} is not in requirements/constraints.txt (an untested version)"
            expected = CONSTRAINTS[pin.key]
            assert pin.version == expected, f"{pin.name}=={pin.version}, requirements/constraints.txt: {expected}"
    assert wheelhouse.problems_with_pins(PINS, CONSTRAINTS, (NAME, VERSION)) == []


def test_nothing_the_image_has_is_carried_and_each_distribution_once():
    carried = [pin.name for pin in PINS if wheelhouse.in_image(pin.name)]
    assert carried == [], f"the GPU image already has {carried}"
    keys = [pin.key for pin in PINS]
    assert len(keys) == len(set(keys))
    # The stack the check needs is there; what the image has at another version is not.
    for name in ("diffusers", "k-diffusion", "torchsde", "nbgrader", "distributed"):
        assert wheelhouse.normalize(name) in keys
    # Not the package itself: its source travels with the working tree (a device call carries 64 MiB in all).
    assert wheelhouse.normalize(NAME) not in keys
    for name in wheelhouse.IMAGE_VERSIONS:
        assert wheelhouse.in_image(name) and wheelhouse.normalize(name) not in keys


def test_the_image_list_matches_names_as_pip_compares_them():
    assert wheelhouse.in_image("PyYAML") and wheelhouse.in_image("typing_extensions")
    assert wheelhouse.in_image("nvidia-cublas-cu12") and wheelhouse.in_image("jaxlib")
    assert not wheelhouse.in_image("nbgrader") and not wheelhouse.in_image("jupyter-core")


def test_the_pin_checks_catch_a_duplicate_an_image_package_and_a_wrong_version():
    pin = wheelhouse.Pin
    wrong = wheelhouse.problems_with_pins(
        [pin("Mako", "1.4.3", "x"), pin("mako", "1.4.3", "x"), pin("numpy", "2.4.6", "x"), pin("dask", "1.0", "x")],
        {"mako": "1.4.3", "numpy": "2.4.6", "dask": "2026.8.0"},
        (NAME, VERSION),
    )
    assert len(wrong) == 3
    assert "mako is listed 2 times" in wrong[0]
    assert "numpy" in wrong[1] and "image" in wrong[1]
    assert "dask==1.0" in wrong[2] and "2026.8.0" in wrong[2]


def make_house(folder, files):
    folder.mkdir()
    for name, size in files.items():
        (folder / name).write_bytes(b"\0" * size)
    return folder


def test_the_folder_checks_pass_a_complete_house_and_name_what_is_wrong(tmp_path):
    pins = [wheelhouse.Pin("Mako", "1.4.3", "x"), wheelhouse.Pin("rpds-py", "2026.9.1", "x")]
    good = {
        "mako-1.4.3-py3-none-any.whl": 10,
        "rpds_py-2026.9.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": 10,
        "bubblewrap_0.8.0-2+deb12u1_amd64.deb": 10,
    }
    assert wheelhouse.problems_with_folder(make_house(tmp_path / "good", good), pins) == []
    bad = dict(good)
    bad["mako-1.4.2-py3-none-any.whl"] = 10
    bad["zict-3.0.0-py2.py3-none-any.whl"] = 2**20
    del bad["rpds_py-2026.9.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    wrong = wheelhouse.problems_with_folder(make_house(tmp_path / "bad", bad), pins, limit_mib=0.5)
    text = "\n".join(wrong)
    assert "mako: 2 wheels" in text
    assert "rpds-py==2026.9.1: no wheel" in text
    assert "zict: a wheel that no pin asks for" in text
    assert "over the limit of 0.5 MiB" in text and "zict-3.0.0-py2.py3-none-any.whl (1.00 MiB)" in text


def test_wheel_names_parse_to_pep503_names_and_versions():
    parse = wheelhouse.wheel_name_version
    assert parse("SQLAlchemy-2.1.9-cp312-cp312-manylinux2014_x86_64.whl") == ("sqlalchemy", "2.1.9")
    assert parse("jupyter_core-5.9.1-py3-none-any.whl") == ("jupyter-core", "5.9.1")
    assert parse("pkg-1.0-1build-py3-none-any.whl") == ("pkg", "1.0")
    assert parse("LISTING.md") is None


def test_emptying_refuses_a_folder_that_is_not_a_wheelhouse(tmp_path):
    house = make_house(tmp_path / "house", {"a-1.0-py3-none-any.whl": 1, "LISTING.md": 1})
    wheelhouse.empty(house)
    assert list(house.iterdir()) == []
    other = make_house(tmp_path / "other", {"notes.txt": 1})
    with pytest.raises(SystemExit, match="not emptied"):
        wheelhouse.empty(other)
    assert (other / "notes.txt").exists()


def test_help_runs_and_make_runs_the_script():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--out" in done.stdout, done.stderr
    dry = subprocess.run(["make", "-n", "wheelhouse"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0 and "scripts/wheelhouse.py" in dry.stdout, dry.stderr
