"""k-diffusion's own samplers on the course's denoisers: import ``k_diffusion.sampling`` without its heavy extras.

k-diffusion (Katherine Crowson's reference code for Karras et al. 2022) writes every sampler as
``sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, ...)`` over a denoiser
``model(x, sigma, **extra_args) -> x0_hat``, the interface of this package's samplers, so its samplers run on a
course denoiser unchanged (chapter 4, "Running k-diffusion's samplers on the course's models")::

    from diffusion_internals.course import checkpoints, kdiffusion

    K = kdiffusion.import_sampling()
    digits = checkpoints.load_denoiser("digits-cosine-eps")
    x0 = K.sample_dpmpp_2m(digits, x, sigmas, extra_args={"class_labels": labels}, disable=True)

Why not ``import k_diffusion``: the package's ``__init__`` imports all of k-diffusion, its training and evaluation
code included, which needs libraries the course does not install (clip, clean-fid, scikit-image, ...), and
``k_diffusion/utils.py`` imports torchvision, which may not import beside the course's pinned torch. The samplers
need none of them. :func:`import_sampling` registers a bare ``k_diffusion`` package (its ``__init__`` never runs)
and, only while ``k_diffusion.sampling`` is imported, puts an empty stand-in for a torchvision that is not already
imported; :func:`import_external` adds k-diffusion's wrappers of eps and v networks (``k_diffusion.external``).
A ``k_diffusion.sampling`` already imported (a full ``import k_diffusion`` first) is returned as it is.

k-diffusion is optional: it is not among the package's dependencies, and each function raises ImportError with
the install command, :data:`INSTALL`, when it or one of the samplers' own dependencies is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

__all__ = ["INSTALL", "import_sampling", "import_external"]

# The version the course is tested with; --no-deps leaves out the training extras (clip, wandb, ...).
INSTALL = "pip install --no-deps k-diffusion==0.1.1.post1 torchdiffeq torchsde trampoline"
TORCHVISION = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _missing(what: str, name: str) -> ImportError:
    return ModuleNotFoundError(
        f"{what}: k-diffusion's samplers are optional in this course; install them with `{INSTALL}` "
        f"(in a notebook: %{INSTALL})",
        name=name,
    )


def import_sampling() -> types.ModuleType:
    """``k_diffusion.sampling`` (Karras et al. 2022 reference samplers) without running k_diffusion/__init__.py."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    added = []  # what this call put into sys.modules, taken out again if the import fails
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")  # finds the package; does not execute it
        if spec is None or not spec.submodule_search_locations:
            raise _missing("k-diffusion is not installed", "k_diffusion")
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["k_diffusion"] = package
        added.append("k_diffusion")

    stubs = {name: types.ModuleType(name) for name in TORCHVISION if name not in sys.modules}
    if len(stubs) == len(TORCHVISION):  # never hide a torchvision that is already imported
        stubs["torchvision"].transforms = stubs["torchvision.transforms"]
        stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
        sys.modules.update(stubs)
    else:
        stubs = {}
    before = set(sys.modules)
    try:
        return importlib.import_module("k_diffusion.sampling")
    except BaseException as error:  # leave nothing half-imported, whatever failed
        added += [name for name in set(sys.modules) - before if name.startswith("k_diffusion")]
        for name in added:
            sys.modules.pop(name, None)
        if isinstance(error, ModuleNotFoundError):
            raise _missing(f"k-diffusion's samplers need {error.name!r}, which is not installed", error.name) from error
        raise
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def import_external() -> types.ModuleType:
    """``k_diffusion.external``, k-diffusion's eps and v network wrappers (Karras et al. 2022, Table 1)."""
    import_sampling()
    return importlib.import_module("k_diffusion.external")
