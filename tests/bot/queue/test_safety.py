"""The safety checker's verdicts: taken in the GPU thread after the engine, stored per picture."""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bot.config import BotConfig
from bot.queue import screening
from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent
from bot.queue.local import LocalJobQueue
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole
from engine.engine import Engine
from engine.errors import ModelLoadError
from engine.job import InpaintRequest
from engine.safety import VIEW_SIDE, DiffusersSafetyChecker
from engine.settings import InpaintSettings
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import (
    FakeEngine,
    StubSafetyChecker,
    hold_worker,
    next_event,
    request,
    tiny_picture,
)
from tests.pictures import photo, png_bytes, rect_mask


def painted_with(seed: int) -> StubSafetyChecker:
    """Flags the fake engine's picture for ``seed`` (its colour encodes the seed), and no other."""
    known = tiny_picture(seed).getpixel((0, 0))
    return StubSafetyChecker(lambda image: image.getpixel((0, 0)) == known)


async def verdicts(store: Store, job_id: int) -> list[bool | None]:
    job = await jobs.get_job(store, job_id)
    assert job is not None
    return [link.nsfw for link in job.images_with(ImageRole.OUTPUT)]


async def test_each_picture_gets_its_verdict_in_the_gpu_thread(
    make_queue: MakeQueue, store: Store
) -> None:
    checker = painted_with(11)
    queue, events = await make_queue(safety=checker)
    queued = await queue.submit(JobSubmission(1, request("two", count=2, seed=10)))
    done = await next_event(events, DoneEvent, queued.job_id)
    assert done.seeds == [10, 11]
    assert await verdicts(store, queued.job_id) == [False, True]
    assert len(checker.checks) == 1
    pictures, thread = checker.checks[0]
    assert pictures == 2 and thread.startswith("inpaint-gpu")


async def test_without_a_checker_pictures_are_unchecked(make_queue: MakeQueue, store: Store) -> None:
    queue, events = await make_queue()
    queued = await queue.submit(JobSubmission(1, request("plain")))
    await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [None]


async def test_a_failing_checker_flags_the_pictures_and_the_job_still_succeeds(
    make_queue: MakeQueue, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    checker = StubSafetyChecker(error=RuntimeError("checker broke"))
    queue, events = await make_queue(safety=checker)
    queued = await queue.submit(JobSubmission(1, request("unlucky", count=2)))
    with caplog.at_level(logging.ERROR, logger="bot.queue.local"):
        await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [True, True]
    assert "the safety checker failed; 2 pictures count as flagged" in caplog.text


async def test_a_checker_that_miscounts_flags_the_pictures(make_queue: MakeQueue, store: Store) -> None:
    class Miscounting(StubSafetyChecker):
        def flags(self, images: object) -> list[bool]:
            return [False]

    queue, events = await make_queue(safety=Miscounting())
    queued = await queue.submit(JobSubmission(1, request("two", count=2)))
    await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [True, True]


async def test_a_batch_is_checked_at_once_and_the_verdicts_go_to_their_jobs(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    checker = painted_with(30)
    queue, events = await make_queue(safety=checker, batch_size=4)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker", seed=1)))
    first = await queue.submit(JobSubmission(1, request("a", count=2, seed=20)))
    second = await queue.submit(JobSubmission(2, request("b", seed=30)))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, second.job_id)
    assert fake_engine.calls[-1] == ["a", "b"]
    assert checker.checks[-1][0] == 3  # one check for the batch's three pictures
    assert await verdicts(store, first.job_id) == [False, False]
    assert await verdicts(store, second.job_id) == [True]


def test_the_stub_tells_pictures_apart() -> None:
    """The known-picture stub the tests rely on flags only that picture."""
    checker = painted_with(3)
    assert checker.flags([tiny_picture(3), tiny_picture(4), Image.new("RGB", (8, 8))]) == [
        True,
        False,
        False,
    ]


async def test_the_checker_loads_with_the_model(make_queue: MakeQueue) -> None:
    checker = painted_with(3)
    await make_queue(safety=checker)
    assert len(checker.loads) == 1 and checker.loads[0].startswith("inpaint-gpu")
    assert checker.checks == []  # loading judged nothing


async def test_a_checker_that_cannot_load_stops_the_start(
    store: Store, bot_config: BotConfig, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    """Running on would count every result as flagged: withheld, silently, under the default policy."""
    missing = DiffusersSafetyChecker(str(tmp_path / "no-checker"), torch.device("cpu"), torch.float32)
    queue = LocalJobQueue(fake_engine, store, bot_config, safety=missing)
    with pytest.raises(ModelLoadError, match=r"^INPAINTBOT_SAFETY_CHECKER=\S+no-checker could not"):
        await queue.start()
    await queue.close()


class RecordingChecker:
    """Records every picture it is shown; flags those at the ``flagged`` positions of a call."""

    def __init__(self, flagged: frozenset[int] = frozenset()) -> None:
        self.flagged = flagged
        self.shown: list[Image.Image] = []

    def load(self) -> None:
        pass

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        self.shown.extend(images)
        return [index in self.flagged for index in range(len(images))]


def test_the_checker_sees_the_whole_picture_padded_and_each_repainted_crop(engine: Engine) -> None:
    """A small repaint at the edge of a wide picture: CLIP's centre crop would never see it."""
    wide = photo(512, 64, seed=5)
    result = engine.inpaint(
        InpaintRequest(
            png_bytes(wide),
            InpaintSettings.parse(steps=2, resolution=64, seed=1),
            png_bytes(rect_mask(512, 64, (470, 16, 500, 48))),
        )
    )
    (box,) = result.repainted
    assert box.x1 > 448, "the repainted crop is at the right edge"
    picture = result.images[0].image

    only_the_crop = RecordingChecker(flagged=frozenset({1}))
    shown = screening.views(only_the_crop, [result])
    assert screening.verdicts(only_the_crop, [result], shown) == [[True]]
    whole, crop = only_the_crop.shown
    assert_padded_view(whole, picture)  # its right edge is there: padded, not centre-cropped
    # The crop fills its own view: no detail lost to the whole picture's scale.
    assert_padded_view(crop, picture.crop(box.as_tuple()))

    nothing = RecordingChecker()
    assert screening.verdicts(nothing, [result], shown) == [[False]]


def assert_padded_view(view: Image.Image, picture: Image.Image) -> None:
    """``view`` is all of ``picture``, scaled to touch two sides of a square, between black bands."""
    assert view.size == (VIEW_SIDE, VIEW_SIDE)
    content = view.getbbox()
    assert content is not None
    x0, y0, x1, y1 = content
    assert max(x1 - x0, y1 - y0) == VIEW_SIDE
    assert abs((x1 - x0) / (y1 - y0) - picture.width / picture.height) < 0.1
    shown = np.asarray(view.crop(content)).astype(int)
    expected = np.asarray(picture.resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(shown - expected).mean() < 8
