"""Masks from words: the syntax, the matches and picking among them with known boxes, the mask
preview stepping through them, and the real (tiny) models through ``Engine.prepare``."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import MaskError
from engine.job import InpaintRequest, MaskSource
from engine.mask_preview import RawMask, picked
from engine.masking import Box
from engine.masks import words
from engine.masks.words import Match, Query
from engine.settings import InpaintSettings
from tests.pictures import photo, png_bytes, rect_mask
from tests.support.known_boxes import KnownBoxes

# Two people and a face inside the left one, on a 96 x 64 picture.
PEOPLE = KnownBoxes(
    {
        "person": [(10, 10, 30, 60, 0.6), (50, 20, 90, 50, 0.9)],
        "face": [(15, 10, 25, 20, 0.8)],
        "dog": [(40, 5, 45, 10, 0.5)],
    }
)


def marked(mask: Image.Image) -> set[tuple[int, int]]:
    ys, xs = np.nonzero(np.asarray(mask))
    return set(zip(xs.tolist(), ys.tolist(), strict=True))


def box(x0: int, y0: int, x1: int, y1: int) -> set[tuple[int, int]]:
    return {(x, y) for x in range(x0, x1) for y in range(y0, y1)}


def chosen(finder: KnownBoxes, mask_prompt: str, mask_pick: str) -> set[tuple[int, int]]:
    """The pixels of the matches ``mask_pick`` keeps, picked as the engine picks them."""
    image = photo(96, 64)
    whole = Box(0, 0, image.width, image.height)
    found = [RawMask(m, whole, match) for match, m in words.find_matches(finder, image, mask_prompt)]
    return set().union(*(marked(raw.mask) for raw in picked(found, MaskSource.WORDS, mask_pick)))


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("the red shirt", Query(("the red shirt",), ())),
        ("person | dog", Query(("person", "dog"), ())),
        (" person |  | not face|NOT hands ", Query(("person",), ("face", "hands"))),
        ("nothing | not", Query(("nothing", "not"), ())),  # "not" alone is a word, not a removal
    ],
)
def test_parse(text: str, query: Query) -> None:
    assert words.parse(text) == query


def test_only_removals_name_nothing_to_mask() -> None:
    with pytest.raises(MaskError, match="only removes"):
        words.parse("not face | not hands")


@pytest.mark.parametrize(
    ("pick", "pixels"),
    [
        ("all", box(10, 10, 30, 60) | box(50, 20, 90, 50)),
        ("largest", box(50, 20, 90, 50)),
        ("left", box(10, 10, 30, 60)),
        ("right", box(50, 20, 90, 50)),
        ("top", box(50, 20, 90, 50)),  # centre y 35 against 35: the first of equals, most confident
        ("bottom", box(50, 20, 90, 50)),
        ("1", box(50, 20, 90, 50)),  # most confident first
        ("2", box(10, 10, 30, 60)),
    ],
)
def test_mask_pick_chooses_among_the_matches(pick: str, pixels: set[tuple[int, int]]) -> None:
    assert chosen(PEOPLE, "person", pick) == pixels


def test_top_and_bottom_follow_the_centres() -> None:
    finder = KnownBoxes({"cat": [(0, 0, 10, 10, 0.5), (0, 30, 10, 40, 0.5)]})
    assert chosen(finder, "cat", "top") == box(0, 0, 10, 10)
    assert chosen(finder, "cat", "bottom") == box(0, 30, 10, 40)


def test_a_pick_past_the_matches_says_how_many_there_were() -> None:
    with pytest.raises(MaskError, match=r"mask_pick 3 asks for match number 3 of the mask from words, "):
        chosen(PEOPLE, "person", "3")


def test_union_and_subtraction() -> None:
    both = chosen(PEOPLE, "person | dog", "all")
    assert both == box(10, 10, 30, 60) | box(50, 20, 90, 50) | box(40, 5, 45, 10)
    without_face = chosen(PEOPLE, "person | not face", "all")
    assert without_face == (box(10, 10, 30, 60) - box(15, 10, 25, 20)) | box(50, 20, 90, 50)
    # The pick chooses among what is added; what is removed is removed wherever it is.
    assert chosen(PEOPLE, "person | not face", "left") == box(10, 10, 30, 60) - box(15, 10, 25, 20)


def test_each_match_is_its_own_mask_most_confident_first_and_emptied_ones_are_dropped() -> None:
    matches = words.find_matches(PEOPLE, photo(96, 64), "person | face | dog | not face")
    # The face is removed from itself, so it is no match; the left person loses the face's pixels.
    assert [(match.box, match.score) for match, _ in matches] == [
        ((50, 20, 90, 50), 0.9),
        ((10, 10, 30, 60), 0.6),
        ((40, 5, 45, 10), 0.5),
    ]
    assert [marked(mask) for _, mask in matches] == [
        box(50, 20, 90, 50),
        box(10, 10, 30, 60) - box(15, 10, 25, 20),
        box(40, 5, 45, 10),
    ]


def test_nothing_found_names_what_was_looked_for() -> None:
    with pytest.raises(MaskError, match=r"Nothing matching 'unicorn' or 'rainbow' was found"):
        words.find_matches(PEOPLE, photo(96, 64), "unicorn | rainbow | not face")


def test_removing_everything_is_a_clear_message() -> None:
    with pytest.raises(MaskError, match="Removing 'person' from 'face' left nothing"):
        words.find_matches(PEOPLE, photo(96, 64), "face | not person")


# -- through the engine ------------------------------------------------------------------------------


@pytest.fixture
def finder(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> KnownBoxes:
    known = KnownBoxes(dict(PEOPLE.boxes))
    monkeypatch.setattr(engine, "word_finder", known)
    return known


def request(
    mask: Image.Image | None = None, found: bytes | None = None, **settings: object
) -> InpaintRequest:
    return InpaintRequest(
        image=png_bytes(photo(96, 64)),
        mask=png_bytes(mask) if mask is not None else None,
        settings=InpaintSettings.parse(seed=1, steps=2, **settings),
        found_mask=found,
    )


def test_prepare_masks_what_the_words_name(engine: Engine, finder: KnownBoxes) -> None:
    job = engine.prepare(request(mask_prompt="person | not face", mask_pick="right", mask_blur=0))
    assert job.mask_source is MaskSource.WORDS
    (mask_pass,) = job.passes
    assert mask_pass.box.as_tuple()[0] <= 50 and mask_pass.box.as_tuple()[2] >= 90
    assert job.found_mask is not None
    assert marked(Image.open(io.BytesIO(job.found_mask))) == box(50, 20, 90, 50)
    assert finder.asked == ["person", "face"]


def test_grow_and_invert_apply_to_the_found_mask(engine: Engine, finder: KnownBoxes) -> None:
    job = engine.prepare(
        request(mask_prompt="dog", mask_blur=0, mask_grow=2, invert_mask=True, area="whole")
    )
    repainted = marked(job.passes[0].mask)
    # Inverted first (all but the dog), then grown by 2 px: into the dog's edge (A1111's order).
    assert (42, 7) not in repainted
    assert (40, 7) in repainted and (39, 7) in repainted and (0, 0) in repainted


def test_a_rerun_reuses_the_found_mask_without_searching(engine: Engine, finder: KnownBoxes) -> None:
    first = engine.prepare(request(mask_prompt="person", mask_pick="left", mask_blur=0))
    finder.asked.clear()
    finder.boxes.clear()  # a search now would find nothing
    again = engine.prepare(
        request(found=first.found_mask, mask_prompt="person", mask_pick="left", mask_blur=0)
    )
    assert finder.asked == []
    assert again.mask_source is MaskSource.WORDS and again.found_mask == first.found_mask
    assert marked(again.passes[0].mask) == marked(first.passes[0].mask)


# Three cats: the most confident in the middle, the leftmost second, the largest (and rightmost) last.
CATS = {"cat": [(60, 5, 90, 55, 0.4), (5, 5, 15, 15, 0.7), (30, 30, 45, 45, 0.9)]}
MIDDLE, LEFT, LARGEST = box(30, 30, 45, 45), box(5, 5, 15, 15), box(60, 5, 90, 55)


def centre(pixels: set[tuple[int, int]]) -> tuple[int, int]:
    xs, ys = zip(*pixels, strict=True)
    return (min(xs) + max(xs)) // 2, (min(ys) + max(ys)) // 2


def preview_shows(engine: Engine, mask_pick: str) -> tuple[int, int, list[bool]]:
    """The preview's matches, the match it shows, and which cats it tints (middle, left, largest)."""
    shown = engine.mask_preview(request(mask_prompt="cat", mask_pick=mask_pick, mask_blur=0))
    under = np.asarray(photo(96, 64)).astype(int)
    tinted = (np.asarray(shown.overlay).astype(int) != under).any(axis=-1)
    cats = [bool(tinted[centre(cat)[1], centre(cat)[0]]) for cat in (MIDDLE, LEFT, LARGEST)]
    return shown.matches, shown.shown, cats


def test_the_preview_counts_every_match_and_numbers_go_by_confidence(
    engine: Engine, finder: KnownBoxes
) -> None:
    finder.boxes.update(CATS)
    assert preview_shows(engine, "all") == (3, 0, [True, True, True])
    assert preview_shows(engine, "1") == (3, 1, [True, False, False])
    assert preview_shows(engine, "2") == (3, 2, [False, True, False])
    assert preview_shows(engine, "3") == (3, 3, [False, False, True])


@pytest.mark.parametrize(
    ("pick", "rank", "pixels"),
    [("left", 2, LEFT), ("largest", 3, LARGEST), ("right", 3, LARGEST), ("1", 1, MIDDLE)],
)
def test_a_pick_by_place_or_size_goes_by_the_finders_boxes(
    engine: Engine, finder: KnownBoxes, pick: str, rank: int, pixels: set[tuple[int, int]]
) -> None:
    finder.boxes.update(CATS)
    assert preview_shows(engine, pick)[:2] == (3, rank), "the preview names the match it shows"
    job = engine.prepare(request(mask_prompt="cat", mask_pick=pick, mask_blur=0))
    assert job.found_mask is not None
    assert marked(Image.open(io.BytesIO(job.found_mask))) == pixels, "the found mask is what is painted"


def test_the_found_mask_is_the_union_of_the_picked_matches(engine: Engine, finder: KnownBoxes) -> None:
    finder.boxes.update(CATS)
    job = engine.prepare(request(mask_prompt="cat | not face", mask_blur=0))
    assert marked(Image.open(io.BytesIO(job.found_mask or b""))) == MIDDLE | LEFT | LARGEST


def test_a_stored_found_mask_is_not_picked_again(engine: Engine, finder: KnownBoxes) -> None:
    """It is the match the first run picked: "2" of its one mask would otherwise fail."""
    finder.boxes.update(CATS)
    first = engine.prepare(request(mask_prompt="cat", mask_pick="2", mask_blur=0))
    finder.boxes.clear()
    again = engine.prepare(
        request(found=first.found_mask, mask_prompt="cat", mask_pick="2", mask_blur=0)
    )
    assert again.found_mask == first.found_mask
    assert marked(Image.open(io.BytesIO(again.found_mask or b""))) == LEFT
    shown = engine.mask_preview(
        request(found=first.found_mask, mask_prompt="cat", mask_pick="2", mask_blur=0)
    )
    assert (shown.matches, shown.shown) == (1, 0)


def test_nothing_found_fails_at_prepare(engine: Engine, finder: KnownBoxes) -> None:
    with pytest.raises(MaskError, match="Nothing matching 'the red shirt' was found"):
        engine.prepare(request(mask_prompt="the red shirt"))


def test_a_mask_picture_and_words_together_are_refused(engine: Engine, finder: KnownBoxes) -> None:
    with pytest.raises(MaskError, match="either a mask picture or mask_prompt, not both"):
        engine.prepare(request(mask=rect_mask(96, 64, (0, 0, 9, 9)), mask_prompt="person"))


def test_words_win_over_the_face_mask(engine: Engine, finder: KnownBoxes) -> None:
    job = engine.prepare(request(mask_prompt="dog", auto_mask="face"))
    assert job.mask_source is MaskSource.WORDS


def test_turned_off_by_the_operator(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "word_finder", None)
    with pytest.raises(MaskError, match="turned off on this bot"):
        engine.prepare(request(mask_prompt="person"))


def test_none_turns_the_models_off(tmp_path: Path) -> None:
    config = EngineConfig(mask_detector="none", device="cpu", _env_file=None)
    assert config.mask_detector is None and Engine(config).word_finder is None


def test_the_real_models_load_and_run_through_prepare(word_models_engine: Engine) -> None:
    """Random weights find random things: this is the loading and running code users run, end to end."""
    engine = word_models_engine
    assert isinstance(engine.word_finder, words.WordModels)
    image = photo(96, 64)
    found = engine.word_finder.detect(image, "person")
    assert found and all(isinstance(m, Match) for m in found)
    job = engine.prepare(request(mask_prompt="person", mask_pick="1", mask_blur=0))
    assert job.mask_source is MaskSource.WORDS
    found_mask = Image.open(io.BytesIO(job.found_mask or b""))
    assert found_mask.size == image.size and found_mask.getbbox() is not None
    (result,) = engine.run([job])
    assert result.mask_source is MaskSource.WORDS
    assert (
        "Mask source: mask from words, Mask prompt: person, Mask pick: 1" in result.images[0].parameters
    )


def test_a_mask_prompt_may_name_a_bounded_number_of_things() -> None:
    """Each phrase is one detector call at submission: 150 of them would hold up everyone's jobs."""
    words.parse(" | ".join(["hat"] * (words.MAX_PHRASES - 1) + ["not face"]))
    with pytest.raises(MaskError, match=f"names {words.MAX_PHRASES + 1} things; .* at most"):
        words.parse(" | ".join(["hat"] * words.MAX_PHRASES + ["not face"]))
