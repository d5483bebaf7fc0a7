"""The diffusers safety checker wrapper, on a tiny random-weight checker built in code.

The tiny checker's first concept embedding is the embedding of a red picture, so red is flagged and
blue is not: this checks that verdicts flow through the loader and the wrapper in order, not the
real model's judgement.
"""

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image, ImageStat
from transformers import CLIPConfig, CLIPImageProcessor

from engine.config import DEFAULT_SAFETY_CHECKER, EngineConfig
from engine.errors import ModelLoadError
from engine.masking import Box
from engine.safety import VIEW_SIDE, DiffusersSafetyChecker, safety_checker, screen

RED = Image.new("RGB", (40, 40), (255, 0, 0))
BLUE = Image.new("RGB", (40, 40), (0, 0, 255))
CPU = torch.device("cpu")


def build_tiny_checker(folder: Path) -> Path:
    """A ``StableDiffusionSafetyChecker`` on a tiny CLIP vision tower, saved with its processor."""
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    model = StableDiffusionSafetyChecker(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})

    def embed(image: Image.Image) -> torch.Tensor:
        pixels = processor(images=[image], return_tensors="pt").pixel_values
        return model.visual_projection(model.vision_model(pixels)[1])[0]

    with torch.no_grad():
        red, blue = embed(RED), embed(BLUE)
        similarity = torch.nn.functional.cosine_similarity(red, blue, dim=0).item()
        assert similarity < 0.99, "the tiny model must tell red from blue"
        model.concept_embeds[0] = red
        model.concept_embeds_weights.fill_(2.0)  # cosine similarity never exceeds 1: never flagged
        model.concept_embeds_weights[0] = (1 + similarity) / 2  # red: 1 > threshold > blue
        model.special_care_embeds_weights.fill_(2.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_checker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checker(tmp_path_factory.mktemp("tiny-safety-checker"))


def test_verdicts_follow_the_pictures_in_order(tiny_checker_path: Path) -> None:
    checker = DiffusersSafetyChecker(str(tiny_checker_path), CPU, torch.float32)
    assert checker.flags([RED, BLUE, RED]) == [True, False, True]
    assert checker.flags([BLUE.convert("RGBA")]) == [False]  # any mode is converted to RGB first


def test_a_checker_that_cannot_load_names_the_setting_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ModelLoadError) as caught:
        DiffusersSafetyChecker(str(missing), CPU, torch.float32).load()
    message = str(caught.value)
    assert message.startswith(f"INPAINTBOT_SAFETY_CHECKER={missing} could not be loaded (")
    assert "INPAINTBOT_SAFETY_CHECKER=none to turn checking off" in message
    assert "\n" not in message


def test_loads_lazily_and_fails_on_use(tmp_path: Path) -> None:
    checker = DiffusersSafetyChecker(str(tmp_path / "missing"), CPU, torch.float32)
    assert checker.flags([]) == []  # nothing to check: nothing loaded
    with pytest.raises(OSError):
        checker.flags([RED])


def test_configured_by_safety_checker_variable(
    tiny_checker_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert EngineConfig(_env_file=None).safety_checker == DEFAULT_SAFETY_CHECKER
    for off in ("none", "None", ""):
        monkeypatch.setenv("INPAINTBOT_SAFETY_CHECKER", off)
        config = EngineConfig(_env_file=None)
        assert config.safety_checker is None
        assert safety_checker(config, CPU, torch.float32) is None
    monkeypatch.setenv("INPAINTBOT_SAFETY_CHECKER", str(tiny_checker_path))
    checker = safety_checker(EngineConfig(_env_file=None), CPU, torch.float32)
    assert isinstance(checker, DiffusersSafetyChecker)
    assert checker.flags([BLUE, RED]) == [False, True]


class Shown:
    """A checker that records what it is shown and flags red ones (mean red above 200)."""

    def __init__(self, extra: int = 0) -> None:
        self.shown: list[Image.Image] = []
        self.extra = extra  # verdicts too many, to test miscounting

    def load(self) -> None:
        pass

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        self.shown.extend(images)
        flags = [ImageStat.Stat(image.crop(image.getbbox())).mean[0] > 200 for image in images]
        return flags + [False] * self.extra


def test_screen_flags_a_picture_whose_repainted_crop_is_flagged() -> None:
    picture = Image.new("RGB", (1200, 300), (0, 0, 255))
    picture.paste((255, 0, 0), (1100, 100, 1160, 160))  # a small red repaint near the edge
    checker = Shown()
    boxes = [Box(1100, 100, 1160, 160)]
    assert screen(checker, [(picture, boxes), (picture, [])]) == [True, False]
    assert [view.size for view in checker.shown] == [(VIEW_SIDE, VIEW_SIDE)] * 3
    assert [ImageStat.Stat(view).mean[0] > 0 for view in checker.shown] == [True, True, True]


def test_screen_shows_each_repainted_box_once_and_not_the_whole_picture_twice() -> None:
    picture = Image.new("RGB", (300, 200), (0, 0, 255))
    checker = Shown()
    box = Box(10, 10, 50, 50)
    assert screen(checker, [(picture, [Box(0, 0, 300, 200), box, box])]) == [False]
    assert len(checker.shown) == 2


def test_screen_refuses_a_miscount() -> None:
    with pytest.raises(ValueError, match="3 verdicts for 2 pictures"):
        screen(Shown(extra=1), [(RED, [Box(0, 0, 10, 10)])])
