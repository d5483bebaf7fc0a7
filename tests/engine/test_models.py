"""Model loading: the three ways users name a model, and the errors when that fails."""

import gc
import weakref
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import compiled, loading, model_facts
from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import ModelLoadError
from engine.job import InpaintRequest
from engine.model_facts import ModelFacts
from engine.models import LoadedModel, ModelManager, resolve_device
from engine.settings import InpaintSettings
from tests.pictures import photo, png_bytes, rect_mask
from tests.support.tiny_models import save_single_file, tiny_vae


@pytest.fixture
def manager() -> ModelManager:
    return ModelManager(torch.device("cpu"), max_loaded=2)


def test_local_folder_loads_inpainting_pipeline(manager: ModelManager, tiny_sd_path: Path) -> None:
    model = manager.get(str(tiny_sd_path))
    assert model.inpainting and not model.sdxl
    assert model.native_size == 64
    assert model.dtype == torch.float32
    assert manager.get(str(tiny_sd_path)) is model, "pipelines stay resident between jobs"


def test_least_recently_used_model_is_unloaded(
    manager: ModelManager, tiny_sd_path: Path, tiny_sd_regular_path: Path, tiny_sdxl_path: Path
) -> None:
    first = manager.get(str(tiny_sd_path))
    manager.get(str(tiny_sd_regular_path))
    manager.get(str(tiny_sdxl_path))
    assert manager.get(str(tiny_sd_path)) is not first


def test_missing_path(manager: ModelManager, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        manager.get(str(tmp_path / "nope.safetensors"))


def test_hub_id_offline_is_clear(manager: ModelManager) -> None:
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        manager.get("someone/no-such-inpainting-model")


def test_folder_that_is_not_a_pipeline(manager: ModelManager, tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        manager.get(str(tmp_path))


def test_pickle_checkpoints_refused(manager: ModelManager, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match=r"only \.safetensors"):
        manager.get(str(checkpoint))


def test_corrupt_safetensors(manager: ModelManager, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelLoadError, match=r"not a readable \.safetensors"):
        manager.get(str(checkpoint))


def test_cuda_requested_without_gpu() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_native_size_reads_configs_without_loading_weights(
    manager: ModelManager, tiny_sd_path: Path, tmp_path: Path
) -> None:
    assert manager.native_size(str(tiny_sd_path)) == 64
    assert not manager._loaded, "prepare runs beside the GPU worker: it must not load pipelines"
    checkpoint = save_single_file(tiny_sd_path, tmp_path / "model.safetensors")
    assert manager.native_size(str(checkpoint)) == 512, "SD1.x/2.x checkpoints without configs"
    with_configs = ModelManager(torch.device("cpu"), single_file_config=str(tiny_sd_path))
    assert with_configs.native_size(str(checkpoint)) == 64
    assert not with_configs._loaded


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("someone/no-such-inpainting-model", "not in the local Hugging Face cache"),
        ("./nowhere", "does not exist"),
    ],
)
def test_native_size_of_a_model_that_is_not_there(
    manager: ModelManager, name: str, message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        manager.native_size(name)


def test_native_size_of_a_folder_that_is_not_a_pipeline(manager: ModelManager, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        manager.native_size(str(tmp_path))


@pytest.mark.parametrize("single_file", [False, True])
@pytest.mark.parametrize("model", ["sd", "sd-regular", "sdxl"])
def test_describe_tells_without_loading_what_loading_finds(
    request: pytest.FixtureRequest, tmp_path: Path, model: str, single_file: bool
) -> None:
    """prepare decides on these facts (inpainting or not, family, size) before the GPU worker loads
    the model: from config files, or a single file's header (configs from single_file_config)."""
    folder = request.getfixturevalue(f"tiny_{model.replace('-', '_')}_path")
    name = str(save_single_file(folder, tmp_path / "model.safetensors") if single_file else folder)
    manager = ModelManager(torch.device("cpu"), single_file_config=str(folder) if single_file else None)
    described = manager.describe(name)
    assert not manager._loaded
    loaded = manager.get(name)
    assert described == ModelFacts(**{f.name: getattr(loaded, f.name) for f in fields(ModelFacts)})
    assert (described.inpainting, described.sdxl) == (model == "sd", model == "sdxl")


@pytest.mark.parametrize(("channels", "size"), [(4, 768), (9, 512)])
def test_sd2_checkpoint_sizes_follow_diffusers(
    manager: ModelManager, tmp_path: Path, channels: int, size: int
) -> None:
    """Without configs diffusers takes SD 2.1's (768 px), or SD 2's inpainting model's (512 px)."""
    checkpoint = tmp_path / "sd2.safetensors"
    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1, channels, 1, 1),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(
                1, 1024
            ),
        },
        checkpoint,
    )
    facts = manager.describe(str(checkpoint))
    assert (facts.native_size, facts.family, facts.inpainting) == (size, "SD 2.x", channels == 9)


class Recorded(Exception):
    """Raised by the recording stubs: nothing can be downloaded here."""


def recording(calls: list[tuple[object, dict[str, object]]]) -> Callable[..., object]:
    def record(name: object, *args: object, **kwargs: object) -> object:
        calls.append((name, kwargs))
        raise Recorded()

    return record


def test_hub_models_load_safetensors_only_at_the_pinned_revision(
    monkeypatch: pytest.MonkeyPatch, tiny_sd_path: Path, tiny_tile: Path
) -> None:
    """At the diffusers boundary: what a Hub id, a ControlNet and a local folder are loaded with."""
    pipelines: list[tuple[object, dict[str, object]]] = []
    controlnets: list[tuple[object, dict[str, object]]] = []
    configs: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(loading.AutoPipelineForInpainting, "from_pretrained", recording(pipelines))
    monkeypatch.setattr(loading.ControlNetModel, "from_pretrained", recording(controlnets))
    monkeypatch.setattr(model_facts, "hf_hub_download", recording(configs))
    config = EngineConfig(
        model="someone/inpainting", model_revision="0123abc", device="cpu", _env_file=None
    )
    manager = Engine(config).models

    with pytest.raises(Recorded):
        manager.get("someone/inpainting")
    with pytest.raises(Recorded):
        manager.describe("someone/inpainting")
    with pytest.raises(Recorded):
        manager.get("someone/other")  # a model the operator did not pin: the newest
    with pytest.raises(Recorded):
        loading.load_controlnet("someone/controlnet", torch.float32)
    with pytest.raises(Recorded):
        loading.load_controlnet(str(tiny_tile), torch.float32)
    with pytest.raises(Recorded):
        manager.get(str(tiny_sd_path))

    assert pipelines[0] == (
        "someone/inpainting",
        pipelines[0][1] | {"use_safetensors": True, "revision": "0123abc"},
    )
    assert configs[0][1] == {"revision": "0123abc"}
    assert pipelines[1][1]["use_safetensors"] is True and "revision" not in pipelines[1][1]
    assert controlnets[0][1]["use_safetensors"] is True
    # Local folders are the operator's own files: loaded as they are.
    assert "use_safetensors" not in controlnets[1][1]
    assert "use_safetensors" not in pipelines[2][1] and "revision" not in pipelines[2][1]


def failing_first(
    calls: list[tuple[object, dict[str, object]]], error: Exception
) -> Callable[..., object]:
    """A recording stub whose first call fails with ``error``, as diffusers does."""

    def load(name: object, *args: object, **kwargs: object) -> object:
        calls.append((name, kwargs))
        raise error if len(calls) == 1 else Recorded()

    return load


# What diffusers 0.42 says when a repo has no float16 weights: a pipeline, then a single model.
NO_FP16_PIPELINE = ValueError(
    "You are trying to load the model files of the `variant=fp16`, but no such modeling files are "
    "available."
)
NO_FP16_MODEL = OSError(
    "someone/controlnet does not appear to have a file named diffusion_pytorch_model.fp16.safetensors."
)


def test_hub_models_load_their_fp16_weights_in_float16(
    monkeypatch: pytest.MonkeyPatch, tiny_sd_path: Path
) -> None:
    pipelines: list[tuple[object, dict[str, object]]] = []
    controlnets: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(loading.AutoPipelineForInpainting, "from_pretrained", recording(pipelines))
    monkeypatch.setattr(loading.ControlNetModel, "from_pretrained", recording(controlnets))

    for dtype in (torch.float16, torch.float32):
        with pytest.raises(Recorded):
            loading.load_pipeline("someone/inpainting", dtype, None, "0123abc")
        with pytest.raises(Recorded):
            loading.load_controlnet("someone/controlnet", dtype)
    with pytest.raises(Recorded):
        loading.load_pipeline(str(tiny_sd_path), torch.float16, None)

    hub = {"use_safetensors": True, "revision": "0123abc"}
    assert pipelines[0][1] == pipelines[0][1] | hub | {"variant": "fp16", "torch_dtype": torch.float16}
    assert controlnets[0][1] == {"dtype": torch.float16, "use_safetensors": True, "variant": "fp16"}
    assert "variant" not in pipelines[1][1] and pipelines[1][1]["use_safetensors"] is True
    assert controlnets[1][1] == {"dtype": torch.float32, "use_safetensors": True}
    assert "variant" not in pipelines[2][1]  # a local folder loads as it is


@pytest.mark.parametrize(
    ("boundary", "load", "name", "error"),
    [
        (
            "AutoPipelineForInpainting",
            lambda name: loading.load_pipeline(name, torch.float16, None),
            "someone/inpainting",
            NO_FP16_PIPELINE,
        ),
        (
            "ControlNetModel",
            lambda name: loading.load_controlnet(name, torch.float16),
            "someone/controlnet",
            NO_FP16_MODEL,
        ),
    ],
)
def test_a_repo_without_fp16_weights_loads_its_default_ones(
    monkeypatch: pytest.MonkeyPatch,
    boundary: str,
    load: Callable[..., object],
    name: str,
    error: Exception,
) -> None:
    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(getattr(loading, boundary), "from_pretrained", failing_first(calls, error))
    with pytest.raises(Recorded):
        load(name)
    assert [kwargs.get("variant") for _, kwargs in calls] == ["fp16", None]
    assert calls[0][1] == calls[1][1] | {"variant": "fp16"}  # the same load otherwise
    assert calls[1][1]["use_safetensors"] is True


def test_other_load_failures_in_float16_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, dict[str, object]]] = []
    missing = OSError("someone/inpainting is not a local folder and is not a valid model identifier")
    monkeypatch.setattr(
        loading.AutoPipelineForInpainting, "from_pretrained", failing_first(calls, missing)
    )
    with pytest.raises(ModelLoadError, match="not a valid model identifier"):
        loading.load_pipeline("someone/inpainting", torch.float16, None)
    assert len(calls) == 1


def test_an_empty_revision_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINTBOT_MODEL_REVISION", "")
    assert EngineConfig(_env_file=None).model_revision is None


def test_the_tokenizer_is_read_without_loading_the_model(
    manager: ModelManager, tiny_sd_path: Path, tmp_path: Path
) -> None:
    """``prepare`` counts a prompt's chunks beside the GPU thread: it must not load weights."""
    tokenizer = manager.tokenizer(str(tiny_sd_path))
    assert tokenizer("a cat").input_ids
    assert manager.describe(str(tiny_sd_path)) and not manager._loaded
    checkpoint = save_single_file(tiny_sd_path, tmp_path / "tiny.safetensors")
    with_configs = ModelManager(torch.device("cpu"), single_file_config=str(tiny_sd_path))
    single = with_configs.tokenizer(str(checkpoint))
    assert single.get_vocab() == tokenizer.get_vocab()


def test_the_evicted_model_is_released_before_the_next_one_loads(
    tiny_sd_path: Path, tiny_sd_regular_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old and new weights must never both be on the GPU: the cache is emptied once the evicted
    pipeline is gone, and before the next one loads."""
    manager = ModelManager(torch.device("cpu"), max_loaded=1)
    evicted = weakref.ref(manager.get(str(tiny_sd_path)).pipe)
    events: list[str] = []
    monkeypatch.setattr(
        torch.cuda, "empty_cache", lambda: events.append(f"emptied, old alive {evicted() is not None}")
    )
    load = manager._load

    def recorded(name: str) -> LoadedModel:
        events.append(f"loading, old alive {evicted() is not None}")
        return load(name)

    monkeypatch.setattr(manager, "_load", recorded)
    manager.get(str(tiny_sd_regular_path))
    assert events == ["emptied, old alive False", "loading, old alive False"]


def test_a_load_that_runs_out_of_memory_is_tried_alone_then_refused_clearly(
    tiny_sd_path: Path, tiny_sd_regular_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = ModelManager(torch.device("cpu"), max_loaded=2)
    resident = weakref.ref(manager.get(str(tiny_sd_path)).pipe)
    load = manager._load
    tries: list[bool] = []  # whether the other model was still resident at each try

    def out_of_memory(name: str) -> LoadedModel:
        gc.collect()
        tries.append(resident() is not None)
        if name == str(tiny_sd_regular_path) and len(tries) <= 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return load(name)

    monkeypatch.setattr(manager, "_load", out_of_memory)
    with pytest.raises(ModelLoadError, match=r"ran out of memory loading the model .*no other model"):
        manager.get(str(tiny_sd_regular_path))
    assert tries == [True, False], "the second try had the GPU to itself"
    # The manager goes on: the next load works, and so does a job on it.
    assert manager.get(str(tiny_sd_regular_path)).pipe is not None


def test_a_model_that_loads_on_the_second_try_is_kept(
    tiny_sd_path: Path, tiny_sd_regular_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = ModelManager(torch.device("cpu"), max_loaded=2)
    manager.get(str(tiny_sd_path))
    load = manager._load
    calls: list[str] = []

    def once_out_of_memory(name: str) -> LoadedModel:
        calls.append(name)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return load(name)

    monkeypatch.setattr(manager, "_load", once_out_of_memory)
    model = manager.get(str(tiny_sd_regular_path))
    assert manager.get(str(tiny_sd_regular_path)) is model and len(calls) == 2


def test_the_sdxl_vae_setting_replaces_only_sdxl_models_vaes(
    tiny_sd_path: Path, tiny_sdxl_path: Path, tmp_path: Path
) -> None:
    vae = tiny_vae()
    vae.register_to_config(force_upcast=False)  # as the fp16-fix VAE's config says
    vae.save_pretrained(tmp_path / "fp16-fix")
    manager = ModelManager(torch.device("cpu"), sdxl_vae=str(tmp_path / "fp16-fix"))
    sdxl = manager.get(str(tiny_sdxl_path)).pipe.vae
    assert sdxl.config.force_upcast is False
    assert torch.equal(sdxl.decoder.conv_out.weight, vae.decoder.conv_out.weight)
    own = ModelManager(torch.device("cpu")).get(str(tiny_sd_path)).pipe.vae
    assert torch.equal(
        manager.get(str(tiny_sd_path)).pipe.vae.decoder.conv_out.weight, own.decoder.conv_out.weight
    )


def test_a_missing_sdxl_vae_is_a_clear_error(tiny_sdxl_path: Path, tmp_path: Path) -> None:
    manager = ModelManager(torch.device("cpu"), sdxl_vae=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=r"INPAINTBOT_SDXL_VAE.*does not exist"):
        manager.get(str(tiny_sdxl_path))


def test_loaded_vaes_are_sliced(manager: ModelManager, tiny_sd_path: Path) -> None:
    assert manager.get(str(tiny_sd_path)).pipe.vae.use_slicing


def test_compile_is_applied_only_when_asked_and_a_job_runs(
    tiny_sd_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring, with a backend that records what torch.compile hands it and runs it as it is:
    inductor would compile C++ for minutes on a CI CPU. What compiling buys is measured on a GPU
    (bench.gpu --compile)."""
    graphs: list[torch.fx.GraphModule] = []

    def recording(graph: torch.fx.GraphModule, inputs: object) -> Callable[..., object]:
        graphs.append(graph)
        return graph.forward

    monkeypatch.setattr(compiled, "BACKEND", recording)
    monkeypatch.setenv("INPAINTBOT_COMPILE", "1")
    config = EngineConfig(model=str(tiny_sd_path), device="cpu", _env_file=None)
    assert config.compile
    plain = Engine(config.model_copy(update={"compile": False}))
    assert not compiled.is_compiled(plain.load().pipe.unet)
    plain.inpaint(job_request())
    assert not graphs, "nothing is compiled unless the operator asks"

    engine = Engine(config)
    assert compiled.is_compiled(engine.load().pipe.unet)
    result = engine.inpaint(job_request())
    assert result.images[0].image.size == (64, 64)
    assert graphs, "the job's UNet calls went through torch.compile"


def job_request() -> InpaintRequest:
    return InpaintRequest(
        png_bytes(photo(64, 64)),
        InpaintSettings.parse(steps=2, resolution=64, seed=1),
        png_bytes(rect_mask(64, 64, (8, 8, 40, 40))),
    )
