"""The engine end to end with tiny random-weight pipelines loaded through the engine's own loader."""

import io
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from PIL import Image

from engine import controlnet, masking
from engine.config import EngineConfig
from engine.engine import Engine, denoising_steps
from engine.errors import (
    ImageError,
    JobCancelled,
    MaskError,
    NoFaceError,
    OutOfMemoryError,
    SettingsError,
)
from engine.job import InpaintRequest, MaskSource, Progress
from engine.progress import StepTracker
from engine.prompts import MAX_CHUNKS
from engine.settings import InpaintSettings
from tests.pictures import (
    ASTRONAUT_FEATURES,
    ASTRONAUT_HEAD,
    astronaut,
    crowd,
    photo,
    png_bytes,
    rect_mask,
)
from tests.support.memory import MIB, peak_growth

FAST = {"steps": 4, "resolution": 64, "seed": 1234}
# Preparing a 6 MP picture of 200 faces: decoding, detection and 200 crop-sized masks (README).
CROWD_PEAK_BYTES = 250 * MIB
T = TypeVar("T")


def request(image: Image.Image, mask: Image.Image | None = None, **settings: object) -> InpaintRequest:
    values = {**FAST, **settings}
    return InpaintRequest(
        image=png_bytes(image),
        mask=png_bytes(mask) if mask is not None else None,
        settings=InpaintSettings.parse(**values),
    )


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def assert_untouched_outside(result_png: bytes, original: Image.Image, outside: np.ndarray) -> None:
    """Pixels where the (blurred) mask is 0 must be bit-identical to the input."""
    out = pixels(result_png)
    assert out.shape[:2] == (original.height, original.width)
    assert np.array_equal(out[outside], np.asarray(original).astype(np.int16)[outside])


def far_from(box: tuple[int, int, int, int], shape: tuple[int, int], margin: int) -> np.ndarray:
    """Boolean map of pixels further than ``margin`` from the box (beyond blur and grow)."""
    height, width = shape
    keep = np.ones((height, width), dtype=bool)
    x0, y0, x1, y1 = box
    keep[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    return keep


@pytest.mark.parametrize("area", ["whole", "masked"])
@pytest.mark.parametrize("size", [(96, 64), (64, 128), (200, 120), (64, 64)])
def test_unmasked_pixels_identical_and_size_kept(
    engine: Engine, area: str, size: tuple[int, int]
) -> None:
    width, height = size
    image = photo(width, height)
    box = (width // 4, height // 4, width // 2, height // 2)
    result = engine.inpaint(request(image, rect_mask(width, height, box), area=area))
    assert len(result.images) == 1
    out = result.images[0]
    assert (out.width, out.height) == size
    assert_untouched_outside(out.png, image, far_from(box, (height, width), margin=3 * 4 + 2))
    inside = pixels(out.png)[box[1] + 2 : box[3] - 2, box[0] + 2 : box[2] - 2]
    original_inside = np.asarray(image).astype(np.int16)[
        box[1] + 2 : box[3] - 2, box[0] + 2 : box[2] - 2
    ]
    assert np.abs(inside - original_inside).mean() > 1, "the masked area must be repainted"


def test_regular_four_channel_checkpoint(engine: Engine, tiny_sd_regular_path: Path) -> None:
    image = photo(96, 80)
    box = (30, 20, 60, 50)
    result = engine.inpaint(request(image, rect_mask(96, 80, box), model=str(tiny_sd_regular_path)))
    assert not engine.load(str(tiny_sd_regular_path)).inpainting
    assert_untouched_outside(result.images[0].png, image, far_from(box, (80, 96), margin=14))


def test_sdxl_with_weighted_long_prompt(engine: Engine, tiny_sdxl_path: Path) -> None:
    image = photo(80, 64)
    box = (20, 16, 50, 40)
    prompt = "Ana de Armas, (emma watson:0.5), Liza Soberano, " * 4
    result = engine.inpaint(
        request(image, rect_mask(80, 64, box), prompt=prompt, model=str(tiny_sdxl_path))
    )
    assert engine.load(str(tiny_sdxl_path)).sdxl
    assert_untouched_outside(result.images[0].png, image, far_from(box, (64, 80), margin=14))


@pytest.mark.parametrize("content", ["original", "fill", "latent-noise", "latent-nothing"])
def test_masked_content_modes(engine: Engine, content: str) -> None:
    image = photo(96, 96, seed=3)
    box = (32, 32, 64, 64)
    mask = rect_mask(96, 96, box)
    result = engine.inpaint(request(image, mask, masked_content=content, strength=0.5))
    assert_untouched_outside(result.images[0].png, image, far_from(box, (96, 96), margin=14))
    if content != "original":
        baseline = engine.inpaint(request(image, mask, masked_content="original", strength=0.5))
        assert not np.array_equal(pixels(result.images[0].png), pixels(baseline.images[0].png))


def test_seed_reproducible_and_batch_seeds_distinct(engine: Engine) -> None:
    image = photo(64, 64)
    mask = rect_mask(64, 64, (16, 16, 48, 48))
    first = engine.inpaint(request(image, mask, count=3, seed=4294967294))
    again = engine.inpaint(request(image, mask, count=3, seed=4294967294))
    assert [i.seed for i in first.images] == [4294967294, 4294967295, 0]
    assert [i.png for i in first.images] == [i.png for i in again.images]
    assert len({i.png for i in first.images}) == 3
    single = engine.inpaint(request(image, mask, count=1, seed=4294967295))
    assert np.abs(pixels(single.images[0].png) - pixels(first.images[1].png)).max() <= 1


def test_random_seed_is_recorded(engine: Engine) -> None:
    image = photo(64, 64)
    result = engine.inpaint(request(image, rect_mask(64, 64, (8, 8, 40, 40)), seed=None))
    assert 0 <= result.settings.seed == result.images[0].seed <= 2**32 - 1


def test_batch_of_jobs_equals_jobs_run_alone(engine: Engine) -> None:
    jobs = [
        engine.prepare(
            request(photo(64, 64, seed=s), rect_mask(64, 64, (10, 10, 40, 40)), prompt=p, seed=s)
        )
        for s, p in ((1, "a red hat"), (2, "(blue:1.3) scarf"))
    ]
    assert jobs[0].batch_key == jobs[1].batch_key is not None
    together = engine.run(jobs)
    alone = [engine.run([job])[0] for job in jobs]
    for batched, single in zip(together, alone, strict=True):
        assert np.abs(pixels(batched.images[0].png) - pixels(single.images[0].png)).max() <= 2


def test_each_batched_job_previews_its_own_picture(engine: Engine) -> None:
    """Batch mates are other members: a job's previews come from its own rows, as when run alone."""
    mask = rect_mask(64, 64, (8, 8, 56, 56))
    pictures = [photo(64, 64, seed=1), Image.new("RGB", (64, 64), "white")]
    jobs = [
        engine.prepare(request(picture, mask, strength=0.6, seed=seed, count=count))
        for picture, seed, count in ((pictures[0], 1, 2), (pictures[1], 7, 1))
    ]
    assert jobs[0].batch_key == jobs[1].batch_key is not None
    batched: list[list[Progress]] = [[], []]
    engine.run(jobs, on_progress=[seen.append for seen in batched], previews=True)
    for job, seen in zip(jobs, batched, strict=True):
        alone: list[Progress] = []
        engine.run([job], on_progress=[alone.append], previews=True)
        assert [p.step for p in seen] == [p.step for p in alone] == [1, 2]
        for together, single in zip(seen, alone, strict=True):
            assert together.preview is not None and single.preview is not None
            difference = np.abs(image_pixels(together.preview) - image_pixels(single.preview))
            assert difference.max() <= 2, "a batched job's preview shows another job's picture"


def image_pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def test_transparency_is_the_mask(engine: Engine) -> None:
    image = photo(64, 64).convert("RGBA")
    alpha = Image.new("L", (64, 64), 255)
    alpha.paste(0, (20, 20, 44, 44))
    image.putalpha(alpha)
    result = engine.inpaint(request(image))
    assert result.mask_source is MaskSource.TRANSPARENCY
    assert_untouched_outside(
        result.images[0].png, image.convert("RGB"), far_from((20, 20, 44, 44), (64, 64), margin=14)
    )


def test_no_mask_source_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(MaskError, match="mask image"):
        engine.inpaint(request(photo(64, 64)))


def test_face_auto_mask_inpaints_each_face(engine: Engine) -> None:
    photo_with_face = astronaut()
    job = engine.prepare(
        InpaintRequest(png_bytes(photo_with_face), InpaintSettings.parse(auto_mask="face", **FAST))
    )
    assert job.mask_source is MaskSource.FACE
    assert job.settings.strength == 0.4 and job.settings.mask_grow == 4
    assert len(job.passes) == 1, "the astronaut has one face"
    result = engine.run([job])[0]
    out = pixels(result.images[0].png)
    original = np.asarray(photo_with_face).astype(np.int16)
    assert out.shape == (512, 512, 3)
    # Her eyes, nose and mouth were repainted; nothing further from her head than the face mask's
    # grow (4) and blur (4 px sigma) reach changed.
    x0, y0, x1, y1 = ASTRONAUT_FEATURES
    assert np.abs(out[y0:y1, x0:x1] - original[y0:y1, x0:x1]).mean() > 1
    outside = far_from(ASTRONAUT_HEAD, (512, 512), margin=4 + 3 * 4 + 2)
    assert np.array_equal(out[outside], original[outside])


def test_no_face_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(NoFaceError):
        engine.inpaint(
            InpaintRequest(png_bytes(photo(96, 96)), InpaintSettings.parse(auto_mask="face", **FAST))
        )


def test_strength_zero_changes_nothing(engine: Engine) -> None:
    image = photo(64, 64)
    result = engine.inpaint(request(image, rect_mask(64, 64, (8, 8, 40, 40)), strength=0.0))
    assert np.array_equal(pixels(result.images[0].png), np.asarray(image).astype(np.int16))


def test_a1111_parameters_chunk(engine: Engine) -> None:
    image = photo(64, 64)
    result = engine.inpaint(
        request(image, rect_mask(64, 64, (8, 8, 40, 40)), prompt="a cat", negative_prompt="blurry")
    )
    text = Image.open(io.BytesIO(result.images[0].png)).text["parameters"]
    lines = text.splitlines()
    assert lines[0] == "a cat"
    assert lines[1] == "Negative prompt: blurry"
    assert "Steps: 4, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 64x64" in lines[2]
    assert "Denoising strength: 0.75, Mask blur: 4" in lines[2]


def test_progress_every_step_with_previews(engine: Engine) -> None:
    seen: list[Progress] = []
    settings = {"steps": 10, "strength": 0.5}
    engine.inpaint(
        request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), **settings),
        on_progress=seen.append,
        previews=True,
    )
    assert [p.step for p in seen] == [1, 2, 3, 4, 5]
    assert {p.total for p in seen} == {5} == {denoising_steps(InpaintSettings.parse(**settings))}
    assert all(p.preview is not None and p.preview.mode == "RGB" for p in seen)


def test_cancel_stops_within_a_step(engine: Engine) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress.step)
        if progress.step == 2:
            cancel.set()

    with pytest.raises(JobCancelled):
        engine.inpaint(
            request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), steps=20, strength=1.0),
            on_progress=on_progress,
            cancel=cancel,
        )
    assert seen == [1, 2]


def test_out_of_memory_is_reported_and_engine_goes_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40))))
    pipe = engine.load(job.model).pipe

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(type(pipe), "__call__", out_of_memory)
        with pytest.raises(OutOfMemoryError, match="ran out of memory"):
            engine.run([job])
    assert engine.run([job])[0].images


def test_out_of_memory_frees_the_failed_call_before_emptying_the_cache(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emptying the cache while the traceback holds the failed call's tensors gives nothing back."""
    job = engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40))))
    pipe = engine.load(job.model).pipe
    activations: list[weakref.ref[torch.Tensor]] = []
    alive_when_emptied: list[bool] = []

    def out_of_memory(*args: object, **kwargs: object) -> None:
        held = torch.ones(1024)  # stands for the activations of the failed call
        activations.append(weakref.ref(held))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(type(pipe), "__call__", out_of_memory)
        patch.setattr(
            torch.cuda, "empty_cache", lambda: alive_when_emptied.append(activations[0]() is not None)
        )
        with pytest.raises(OutOfMemoryError):
            engine.run([job])
    assert alive_when_emptied == [False]


def test_uploaded_mask_wins_over_transparency(engine: Engine) -> None:
    image = photo(64, 64).convert("RGBA")
    image.putalpha(128)
    result = engine.inpaint(request(image, rect_mask(64, 64, (8, 8, 40, 40))))
    assert result.mask_source is MaskSource.UPLOADED


def test_engine_for_unknown_device_setting_rejected() -> None:
    with pytest.raises(ValueError):
        EngineConfig(device="tpu", _env_file=None)


def test_max_pixels_from_the_environment_refuses_a_larger_picture(
    tiny_sd_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INPAINTBOT_MAX_PIXELS", str(96 * 64))
    engine = Engine(EngineConfig(model=str(tiny_sd_path), device="cpu", _env_file=None))
    assert engine.config.max_pixels == 96 * 64
    accepted = engine.prepare(request(photo(96, 64), rect_mask(96, 64, (8, 8, 40, 40))))
    assert accepted.image.size == (96, 64)
    with pytest.raises(
        ImageError, match=r"97x64 \(0.00621 megapixels\), more than the limit of 0.00614"
    ):
        engine.prepare(request(photo(97, 64), rect_mask(97, 64, (8, 8, 40, 40))))


def test_a_crowd_of_faces_is_refused_beyond_the_operators_cap(engine: Engine) -> None:
    job = request(crowd(), auto_mask="face")

    def refused() -> MaskError:
        with pytest.raises(MaskError) as caught:
            engine.prepare(job)
        return caught.value

    error, growth = peak_growth(refused)
    assert str(error) == (
        "Found 200 faces; this bot repaints at most 16 faces per job. Upload a mask of the faces to "
        "repaint instead, or crop the picture to fewer faces."
    )
    assert growth < CROWD_PEAK_BYTES, f"refusing 200 faces took {growth / MIB:.0f} MiB"


def test_a_crowd_of_faces_prepares_within_bounded_memory(tiny_sd_path: Path) -> None:
    """200 faces in a 6 MP picture: each pass keeps a mask the size of its crop, not of the picture
    (one full-size mask per face was 1.2 GB here)."""
    config = EngineConfig(model=str(tiny_sd_path), device="cpu", max_faces_per_job=200, _env_file=None)
    engine = Engine(config)
    job = request(crowd(), auto_mask="face")
    prepared, growth = peak_growth(lambda: engine.prepare(job))
    assert len(prepared.passes) == 200
    assert growth < CROWD_PEAK_BYTES, f"preparing 200 faces took {growth / MIB:.0f} MiB"
    assert all(p.mask.size == (p.box.width, p.box.height) for p in prepared.passes)
    kept = sum(p.mask.width * p.mask.height for p in prepared.passes)
    assert kept < 10 * MIB, f"the masks kept take {kept / MIB:.0f} MiB"


def test_jobs_batch_only_with_prompts_of_as_many_chunks(engine: Engine) -> None:
    """A batch pads every prompt to its longest, which changes the picture of the shorter ones."""
    mask = rect_mask(64, 64, (10, 10, 40, 40))
    short, other_short, long = (
        engine.prepare(request(photo(64, 64), mask, prompt=prompt))
        for prompt in ("a red hat", "(blue:1.3) scarf", "a red hat BREAK a blue scarf")
    )
    assert (short.prompt_chunks, other_short.prompt_chunks, long.prompt_chunks) == (1, 1, 2)
    assert short.batch_key == other_short.batch_key != long.batch_key
    negative = engine.prepare(request(photo(64, 64), mask, negative_prompt="blurry BREAK dark"))
    assert negative.prompt_chunks == 2, "a negative prompt's chunks count too"


def test_too_many_prompt_chunks_is_refused_when_the_job_is_submitted(engine: Engine) -> None:
    prompt = " BREAK ".join(["a cat"] * (MAX_CHUNKS + 1))
    with pytest.raises(SettingsError) as caught:
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), prompt=prompt))
    assert str(caught.value) == (
        f"The prompt is too long: it takes {MAX_CHUNKS + 1} chunks of 75 tokens (each BREAK starts a "
        f"new one), and this bot takes at most {MAX_CHUNKS}. Shorten the prompt or the negative "
        "prompt, or use fewer BREAKs."
    )
    at_the_limit = " BREAK ".join(["a cat"] * MAX_CHUNKS)
    assert engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), prompt=at_the_limit))


def test_the_first_pass_is_cropped_when_prepared_and_composited_when_read(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU thread's share of a one-pass job is the pipeline call: the crop and resize of the
    upload happen in ``prepare`` and the paste into the full picture when the result is read."""
    picture = photo(160, 96)
    job = engine.prepare(request(picture, rect_mask(160, 96, (40, 20, 100, 70)), count=2))
    staged = job.passes[0].staged
    assert staged is not None and staged.picture.size == staged.mask.size == job.processing_size
    crops: list[tuple[int, int]] = []
    composites: list[int] = []
    crop = Image.Image.crop
    monkeypatch.setattr(
        Image.Image, "crop", lambda self, *a, **kw: crops.append(self.size) or crop(self, *a, **kw)
    )
    composite = masking.composite
    monkeypatch.setattr(
        masking, "composite", lambda *a, **kw: composites.append(1) or composite(*a, **kw)
    )
    (result,) = engine.run([job])
    assert picture.size not in crops, "the GPU thread cropped the full-size picture"
    assert composites == []
    first = result.images[0].image
    assert composites == [1] and result.images[0].image is first  # made once, when first read
    assert first.size == picture.size


def test_previews_are_made_at_most_every_interval() -> None:
    """Steps in between carry the last preview: no copy of the latents from the GPU for them."""
    latents = torch.randn(3, 4, 8, 8)
    clock = iter([0.0, 0.4, 0.8, 1.2, 1.3, 2.5])
    seen: list[list[Progress]] = [[], []]
    tracker = StepTracker(
        6,
        [(seen[0].append, 0), (seen[1].append, 2)],
        None,
        True,
        False,
        interval=1.0,
        clock=lambda: next(clock),
    )
    for step in range(6):
        tracker.on_step_end(None, step, None, {"latents": latents})
    for mine in seen:
        made = [p.preview for p in mine]
        assert [p.step for p in mine] == [1, 2, 3, 4, 5, 6]
        assert made[0] is made[1] is made[2] is not made[3]
        assert made[3] is made[4] is not made[5]
    assert np.abs(image_pixels(seen[0][0].preview) - image_pixels(seen[1][0].preview)).max() > 0


def on_gpu_thread(work: Callable[[], T]) -> T:
    """``work``'s result, computed in a thread named like the queue's GPU thread."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(work()), name="inpaint-gpu")
    thread.start()
    thread.join()
    (result,) = results
    return result


def record_picture_work(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, tuple[int, int]]]:
    """(thread, what, size) of every picture Pillow makes (crop, resize, convert, copy) or pastes into,
    and of the engine's composites and control images (their picture's size)."""
    seen: list[tuple[str, str, tuple[int, int]]] = []

    def made(name: str) -> None:
        method = getattr(Image.Image, name)

        def call(self: Image.Image, *args: Any, **kwargs: Any) -> Any:
            result = method(self, *args, **kwargs)
            size = self.size if name == "paste" else result.size
            seen.append((threading.current_thread().name, name, size))
            return result

        monkeypatch.setattr(Image.Image, name, call)

    def called(owner: object, name: str, picture: int) -> None:
        """``name`` of ``owner``, whose picture is its argument number ``picture``."""
        function = getattr(owner, name)

        def call(*args: Any) -> Any:
            seen.append((threading.current_thread().name, name, args[picture].size))
            return function(*args)

        monkeypatch.setattr(owner, name, call)

    for name in ("crop", "resize", "convert", "copy", "paste"):
        made(name)
    called(masking, "composite", 0)
    called(controlnet, "control_image", 1)
    return seen


def test_face_passes_crop_only_their_boxes_on_the_gpu_thread(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faces close together: a later face's crop shows the earlier repaint. The GPU thread makes it
    from the face's box alone (the upload's pixels there and the earlier output pasted over them);
    the picture is pasted together, full size, only when the result is read."""
    picture = Image.new("RGB", (1200, 900), (90, 120, 80))
    picture.paste(crowd(3, 1), (100, 100))
    job = engine.prepare(request(picture, auto_mask="face", mask_grow=40, count=2))
    assert len(job.passes) == 3
    assert [p.staged is None for p in job.passes] == [bool(p.after) for p in job.passes]
    assert any(p.after for p in job.passes), "no face's crop shows another's repaint"
    seen = record_picture_work(monkeypatch)
    (result,) = on_gpu_thread(lambda: engine.run([job]))
    on_gpu = [(what, size) for thread, what, size in seen if thread == "inpaint-gpu"]
    assert ("paste", (job.passes[1].box.width, job.passes[1].box.height)) in on_gpu
    largest = max(p.box.width * p.box.height for p in job.passes)
    assert max(w * h for _, (w, h) in on_gpu) <= largest < picture.width * picture.height / 10
    assert "composite" not in {what for what, _ in on_gpu}
    del seen[:]
    assert [image.image.size for image in result.images] == [picture.size] * 2
    assert [what for _, what, _ in seen].count("composite") == 2  # one per image, when read


def test_control_images_are_made_when_prepared(
    cn_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of two ControlNet jobs, each with its own down-sampling: their control images are made
    by ``prepare``, and the GPU thread makes none."""
    seen = record_picture_work(monkeypatch)
    mask = rect_mask(96, 64, (30, 16, 70, 48))
    jobs = [
        cn_engine.prepare(
            request(photo(96, 64, seed), mask, controlnet="tile", tile_downsample=rate, seed=5)
        )
        for seed, rate in ((1, 2.0), (2, 4.0))
    ]
    made = [thread for thread, what, _ in seen if what == "control_image"]
    assert made == [threading.current_thread().name] * 2
    del seen[:]
    on_gpu_thread(lambda: cn_engine.run(jobs))
    assert [what for _, what, _ in seen if what == "control_image"] == []
