"""Golden flows across features: automatic face masks, a restart with jobs queued, many users at once."""

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from PIL import Image
from skimage import data

from bot.client import InpaintBot
from bot.config import BotConfig
from bot.delivery.delivery import RETRY_DELAY
from bot.queue.local import LocalJobQueue
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import Job
from engine.engine import PreparedJob
from engine.job import MaskSource
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import (
    JOB_TIMEOUT,
    embed_fields,
    has_result,
    inpaint,
    refusal,
    result,
)
from tests.bot.discord.test_results import job
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded, run_client
from tests.pictures import photo, png_bytes, rect_mask

ASTRONAUT = png_bytes(Image.fromarray(data.astronaut()))
RESULT_FILE = re.compile(r"inpaint-(\d+)-\d+\.png")


def job_of(record: Recorded) -> int:
    """The job id in a result's file name."""
    match = RESULT_FILE.fullmatch(record.files[0].filename)
    assert match, record.files[0].filename
    return int(match.group(1))


async def results(fake: FakeDiscord, kind: str, count: int) -> list[Recorded]:
    """The first ``count`` requests of ``kind`` that carry files, in the order Discord got them."""
    found: list[Recorded] = []
    while len(found) < count:
        after = found[-1] if found else None
        found.append(await fake.wait_for(kind, has_result, after=after, timeout=JOB_TIMEOUT))
    return found


async def inpaint_as(fake: FakeDiscord, user: dict[str, Any]) -> FakeInteraction:
    """/inpaint with a mask by ``user``, cheap enough to run thirty of."""
    image = fake.add_attachment(png_bytes(photo(32, 32)), "photo.png")
    mask = fake.add_attachment(png_bytes(rect_mask(32, 32, (8, 8, 24, 24))), "mask.png")
    return await fake.slash("inpaint", {"image": image, "mask": mask, "steps": 2}, user=user)


async def test_auto_face_mask_repaints_the_face_and_says_so(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    image = fake_discord.add_attachment(ASTRONAUT, "astronaut.png")
    it = await fake_discord.slash("inpaint", {"image": image, "auto_mask": "face", "steps": 5})
    done = await result(fake_discord, it)
    assert MaskSource.FACE.value in done.json["embeds"][0]["footer"]["text"]
    fields = embed_fields(done)
    assert fields["Strength"] == "0.4" and fields["Mask"] == "blur 4, grow 4", "face defaults"


async def test_no_face_is_refused_and_the_bot_serves_the_next_command(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    image = fake_discord.add_attachment(png_bytes(photo(96, 64)), "gradient.png")
    it = await fake_discord.slash("inpaint", {"image": image, "auto_mask": "face"})
    assert (await refusal(fake_discord, it)).startswith("No face was found")

    it = await inpaint(fake_discord, seed=11)
    assert embed_fields(await result(fake_discord, it))["Seed"] == "11"


async def until(store: Store, job_id: int, check: Callable[[Job], bool]) -> None:
    """Wait for the job's row to pass ``check`` (the queue and the deliveries write in the background)."""
    async with asyncio.timeout(JOB_TIMEOUT):
        while (row := await jobs.get_job(store, job_id)) is None or not check(row):
            await asyncio.sleep(0.01)


async def statuses_shown(store: Store, *job_ids: int) -> None:
    """Each job's status message is shown and recorded in the database."""
    for job_id in job_ids:
        await until(store, job_id, lambda row: row.message_id is not None)


class AckingQueue(LocalJobQueue[PreparedJob]):
    """Lets a test wait until the bot has confirmed showing results (the last step of a delivery)."""

    def __init__(self, engine: GatedEngine, store: Store, config: BotConfig) -> None:
        super().__init__(engine, store, config)
        self._acknowledged: list[int] = []
        self._acknowledging = asyncio.Condition()

    async def acknowledge(self, job_id: int) -> None:
        await super().acknowledge(job_id)
        async with self._acknowledging:
            self._acknowledged.append(job_id)
            self._acknowledging.notify_all()

    async def acknowledged(self, count: int) -> None:
        async with asyncio.timeout(JOB_TIMEOUT), self._acknowledging:
            await self._acknowledging.wait_for(lambda: len(self._acknowledged) >= count)


@asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    engine: GatedEngine,
    store: Store,
    config: BotConfig,
    retry_delay: float = RETRY_DELAY,
) -> AsyncIterator[InpaintBot]:
    """A bot with a queue of its own on the shared store; both are closed on exit, client first."""
    queue = AckingQueue(engine, store, config)
    bot = InpaintBot(
        config, queue, store, guild_ready_timeout=0.05, edit_interval=0, retry_delay=retry_delay
    )
    try:
        async with run_client(fake, bot):
            yield bot
    finally:
        await queue.close()


async def test_jobs_queued_at_a_restart_are_delivered_once_each_to_their_channel(
    fake_discord: FakeDiscord, gated_engine: GatedEngine, store: Store, bot_config: BotConfig
) -> None:
    config = bot_config.model_copy(update={"shutdown_timeout": 0})
    user = fake_discord.alice["user"]["id"]
    gated_engine.gate.clear()
    async with running_bot(fake_discord, gated_engine, store, config) as bot:
        asked = [await inpaint(fake_discord, seed=seed) for seed in range(3)]
        for it in asked:  # every job is stored and queued once its first status shows
            await fake_discord.wait_for("edit_webhook_message", it.owns)
        await statuses_shown(store, 1, 2, 3)
        await asyncio.to_thread(gated_engine.waiting.wait, JOB_TIMEOUT)
        await bot.close()
        # The first job is running (held at the gate); shutdown_timeout 0 stops it at its first step.
        closing = asyncio.create_task(bot.queue.close())
        assert gated_engine.cancel is not None
        await asyncio.to_thread(gated_engine.cancel.wait, JOB_TIMEOUT)
        gated_engine.gate.set()
        await closing
    gated_engine.gate.clear()
    assert not fake_discord.recorded(["edit_webhook_message", "post_message"], lambda r: bool(r.files))

    async with running_bot(fake_discord, gated_engine, store, config) as bot:
        gated_engine.gate.set()
        posts = await results(fake_discord, "post_message", len(asked))
        await cast(AckingQueue, bot.queue).acknowledged(len(asked))
    rows = await jobs.user_jobs(store, int(user))
    assert sorted(job_of(post) for post in posts) == sorted(row.id for row in rows)
    assert [row.attempts for row in sorted(rows, key=lambda row: row.id)] == [2, 1, 1]
    assert all(post.json["content"] == f"<@{user}> done." for post in posts)
    assert all(post.params["channel_id"] == fake_discord.channel["id"] for post in posts)
    # The old status messages say the jobs finished, and lose their ✖ Cancel.
    ended = fake_discord.recorded("edit_message")
    assert sorted(r.params["message_id"] for r in ended) == sorted(it.original_id for it in asked)
    assert sorted(r.json["content"] for r in ended) == [
        f"Job {row.id} has finished: see the reply below." for row in sorted(rows, key=lambda r: r.id)
    ]
    assert all(r.json["components"] == [] for r in ended)

    # Shown and acknowledged: another restart sends nothing again, before or after a new job.
    async with running_bot(fake_discord, gated_engine, store, config):
        await result(fake_discord, await inpaint(fake_discord))
    assert len(fake_discord.recorded("post_message", lambda r: bool(r.files))) == len(asked)


async def test_many_users_at_once_are_all_served_in_fair_turns(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    users = [fake_discord.add_member(f"user{i}") for i in range(10)]
    gated_engine.gate.clear()
    await start_bot(edit_interval=0)
    # Three jobs per user, all at once: first come, first served would finish some user's third job
    # before another user's first; fair turns finish every first job before any third.
    asked = [
        (await inpaint_as(fake_discord, user), user["user"]["id"]) for user in users for _ in range(3)
    ]
    for it, _ in asked:  # all thirty are queued before the first may finish
        await fake_discord.wait_for("edit_webhook_message", it.owns)
    gated_engine.gate.set()

    finished = await results(fake_discord, "edit_webhook_message", len(asked))
    assert all(record.status == 200 for record in finished)
    # Commands are handled concurrently, so a user's turns are counted in the order the queue took
    # them: by job id.
    owner = {it.token: user_id for it, user_id in asked}
    job_ids = {record.params["token"]: job_of(record) for record in finished}
    turns_of_user: dict[str, list[int]] = {}
    for token in sorted(job_ids, key=job_ids.__getitem__):
        turns_of_user.setdefault(owner[token], []).append(job_ids[token])
    turn_of_job = {job: turn for jobs in turns_of_user.values() for turn, job in enumerate(jobs)}
    turns = [turn_of_job[job_of(record)] for record in finished]
    assert sorted(turns) == [0] * 10 + [1] * 10 + [2] * 10
    assert max(i for i, turn in enumerate(turns) if turn == 0) < turns.index(2)


async def test_a_result_the_channel_refuses_is_acknowledged_and_its_owner_told(
    fake_discord: FakeDiscord, gated_engine: GatedEngine, store: Store, bot_config: BotConfig
) -> None:
    gated_engine.gate.clear()
    async with running_bot(fake_discord, gated_engine, store, bot_config) as bot:
        it = await inpaint(fake_discord)
        await fake_discord.wait_for("edit_webhook_message", it.owns)
        fake_discord.expire(it)  # the result goes to the channel, where the bot lost Send Messages
        fake_discord.forbid(fake_discord.channel)
        gated_engine.gate.set()
        refused = await fake_discord.wait_for("post_message", timeout=JOB_TIMEOUT)
        assert (refused.status, refused.error_code) == (403, 50013)
        await cast(AckingQueue, bot.queue).acknowledged(1)
        told = await fake_discord.wait_for("post_message", lambda r: r.status == 200)
    dm = fake_discord.dm_with(fake_discord.alice["user"]["id"])
    assert told.params["channel_id"] == dm["id"]
    assert told.json["content"] == (
        f"I could not post the outcome of job 1 in <#{fake_discord.channel['id']}>: I may not send "
        "messages or attach files there, or the channel is gone. Use `/show job:1` in another "
        "channel of that server to see it."
    )
    assert (await job(store, 1)).delivered_at is not None


async def test_a_result_discord_fails_to_take_for_a_moment_is_posted_again_soon(
    fake_discord: FakeDiscord, gated_engine: GatedEngine, store: Store, bot_config: BotConfig
) -> None:
    """Not only after the next restart, which may be weeks away."""
    gated_engine.gate.clear()
    async with running_bot(fake_discord, gated_engine, store, bot_config, retry_delay=0.01) as bot:
        it = await inpaint(fake_discord)
        await fake_discord.wait_for("edit_webhook_message", it.owns)
        fake_discord.expire(it)  # the result goes to the channel, where Discord has an outage
        fake_discord.fail_next("post_message", 2)
        gated_engine.gate.set()
        posted = await fake_discord.wait_for(
            "post_message", lambda r: r.status == 200, timeout=JOB_TIMEOUT
        )
        await cast(AckingQueue, bot.queue).acknowledged(1)
    assert [r.status for r in fake_discord.recorded("post_message")] == [503, 503, 200]
    assert has_result(posted) and job_of(posted) == 1
    assert (await job(store, 1)).delivered_at is not None


async def test_a_job_without_a_channel_is_acknowledged_after_a_restart(
    fake_discord: FakeDiscord, gated_engine: GatedEngine, store: Store, bot_config: BotConfig
) -> None:
    settings = InpaintSettings.parse(steps=2, seed=3)
    image, mask = png_bytes(photo(32, 32)), png_bytes(rect_mask(32, 32, (8, 8, 24, 24)))
    row = await jobs.create_job(store, user_id=1, settings=settings, image=image, mask=mask)
    async with running_bot(fake_discord, gated_engine, store, bot_config) as bot:
        await cast(AckingQueue, bot.queue).acknowledged(1)  # or reported at every start, forever
    assert not fake_discord.recorded("post_message")
    assert (await job(store, row.id)).delivered_at is not None
