"""Each A1111 sampler name runs the diffusers scheduler that implements it, on the model's own schedule."""

import pytest
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from engine.samplers import A1111_NAMES, make_scheduler
from engine.settings import Sampler

# A model's own noise schedule, unlike diffusers' defaults in every value: a v-prediction model
# (SD 2.x 768) with trailing timesteps.
MODEL_SCHEDULE = {
    "num_train_timesteps": 1200,
    "beta_start": 0.0009,
    "beta_end": 0.013,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}
# What A1111's sampler does, in diffusers' terms (diffusers' docs map the names the same way).
EXPECTED = {
    Sampler.EULER_A: (EulerAncestralDiscreteScheduler, {}),
    Sampler.EULER: (EulerDiscreteScheduler, {"use_karras_sigmas": False}),
    Sampler.DPMPP_2M: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    Sampler.DPMPP_2M_KARRAS: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    Sampler.DDIM: (DDIMScheduler, {}),
    Sampler.UNIPC: (UniPCMultistepScheduler, {}),
}


def test_every_sampler_is_mapped() -> None:
    assert set(EXPECTED) == set(Sampler) == set(A1111_NAMES)


@pytest.mark.parametrize("sampler", list(Sampler))
def test_sampler_is_the_right_scheduler_on_the_model_schedule(sampler: Sampler) -> None:
    # The model ships some scheduler; the sampler replaces its kind, never its noise schedule.
    base = EulerAncestralDiscreteScheduler.from_config(MODEL_SCHEDULE).config
    scheduler = make_scheduler(sampler, base)
    scheduler_class, options = EXPECTED[sampler]
    assert type(scheduler) is scheduler_class
    for name, value in {**MODEL_SCHEDULE, **options}.items():
        assert scheduler.config[name] == value, name


def test_a_fresh_scheduler_each_time() -> None:
    """The pipelines keep state in their scheduler (timesteps, step index): jobs must not share one."""
    base = EulerAncestralDiscreteScheduler.from_config(MODEL_SCHEDULE).config
    assert make_scheduler(Sampler.EULER, base) is not make_scheduler(Sampler.EULER, base)


def test_every_sampler_has_its_own_a1111_name() -> None:
    """PNG-info readers recognise the sampler by A1111's spelling (checked in the engine's PNG tests)."""
    assert set(A1111_NAMES) == set(Sampler)
    assert len(set(A1111_NAMES.values())) == len(Sampler)
