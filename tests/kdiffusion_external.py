"""Import ``k_diffusion.external`` (the DiscreteSchedule / DiscreteEpsDDPMDenoiser wrappers) as a test oracle.

``external`` only needs ``k_diffusion.sampling`` and ``k_diffusion.utils``; both are imported by
:func:`tests.kdiffusion.import_k_diffusion_sampling` (with its torchvision stubs), after which
``external`` imports from ``sys.modules`` without touching torchvision.
"""

from __future__ import annotations

import importlib
import types

from kdiffusion import import_k_diffusion_sampling


def import_k_diffusion_external() -> types.ModuleType:
    """Return ``k_diffusion.external`` (Karras et al. 2022 reference wrappers) without k_diffusion/__init__.py."""
    import_k_diffusion_sampling()
    return importlib.import_module("k_diffusion.external")
