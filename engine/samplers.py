"""A1111 sampler names mapped to diffusers schedulers.

Each model keeps the scheduler configuration it shipped with (beta schedule, prediction type, timestep
spacing); only the sampling algorithm changes with the user's choice.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from engine.settings import Sampler

# (diffusers schedulers share ``from_config`` through ConfigMixin, which their type hints do not show)
_SCHEDULERS: dict[Sampler, tuple[Any, dict[str, Any]]] = {
    Sampler.EULER_A: (EulerAncestralDiscreteScheduler, {}),
    Sampler.EULER: (EulerDiscreteScheduler, {}),
    Sampler.DPMPP_2M: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    Sampler.DPMPP_2M_KARRAS: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    Sampler.DDIM: (DDIMScheduler, {}),
    Sampler.UNIPC: (UniPCMultistepScheduler, {}),
}

# How A1111 writes each sampler in the PNG "parameters" chunk, so PNG-info readers recognise it.
A1111_NAMES: dict[Sampler, str] = {
    Sampler.EULER_A: "Euler a",
    Sampler.EULER: "Euler",
    Sampler.DPMPP_2M: "DPM++ 2M",
    Sampler.DPMPP_2M_KARRAS: "DPM++ 2M Karras",
    Sampler.DDIM: "DDIM",
    Sampler.UNIPC: "UniPC",
}


def make_scheduler(sampler: Sampler, base_config: Any) -> SchedulerMixin:
    """A fresh scheduler of the chosen kind with the model's own noise schedule."""
    scheduler_class, overrides = _SCHEDULERS[sampler]
    return scheduler_class.from_config(base_config, **overrides)
