"""Import ``k_diffusion.sampling`` as a test oracle without the rest of k-diffusion.

``import k_diffusion`` runs its ``__init__``, which pulls in heavy extras (clip, skimage, ...), and
``k_diffusion/utils.py`` imports torchvision, which does not import beside the pinned torch. The
sampling module only needs ``utils`` for helpers that never touch torchvision, so we:

1. register a bare ``k_diffusion`` package (``__path__`` from ``find_spec``, ``__init__`` never run);
2. stub ``torchvision``, ``torchvision.transforms`` and ``torchvision.transforms.functional`` in
   ``sys.modules`` only while ``k_diffusion.sampling`` is imported, then put back what was there.

k-diffusion is a declared test dependency: if it is missing this raises, it does not skip.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_TORCHVISION_STUBS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def import_k_diffusion_sampling() -> types.ModuleType:
    """Return ``k_diffusion.sampling`` (Karras et al. 2022 reference code) without running k_diffusion/__init__.py."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")  # finds the package; does not execute it
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                "k-diffusion is a test dependency of this course; install it with "
                "`pip install --no-deps k-diffusion==0.1.1.post1 torchdiffeq torchsde trampoline`"
            )
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["k_diffusion"] = package

    saved = {name: sys.modules.get(name) for name in _TORCHVISION_STUBS}
    stubs = {name: types.ModuleType(name) for name in _TORCHVISION_STUBS}
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]
    stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
    for name in _TORCHVISION_STUBS:
        if saved[name] is None:  # never hide a torchvision that is already imported
            sys.modules[name] = stubs[name]
    try:
        return importlib.import_module("k_diffusion.sampling")
    finally:
        for name in _TORCHVISION_STUBS:
            if saved[name] is None:
                sys.modules.pop(name, None)
