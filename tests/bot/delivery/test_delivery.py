"""A delivery's shutdown, and outcomes Discord refuses."""

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import discord
import pytest

from bot.delivery.delivery import Delivery
from bot.queue.base import JobQueue
from bot.queue.events import DoneEvent, FailedEvent, OutputImage, QueuedEvent
from bot.store import jobs
from bot.store.database import Store
from bot.uploads import DEFAULT_UPLOAD_LIMIT
from engine.job import MaskSource
from engine.settings import InpaintSettings
from tests.pictures import photo, png_bytes


class SlowInteraction:
    """An interaction whose result edit waits until the test lets it through."""

    filesize_limit = DEFAULT_UPLOAD_LIMIT

    def __init__(self) -> None:
        self.editing = asyncio.Event()
        self.release = asyncio.Event()

    def is_expired(self) -> bool:
        return False

    async def edit_original_response(self, **fields: object) -> SimpleNamespace:
        self.editing.set()
        await self.release.wait()
        return SimpleNamespace(id=77, channel=SimpleNamespace(id=5))


class RecordingQueue:
    def __init__(self) -> None:
        self.acknowledged: list[int] = []

    async def acknowledge(self, job_id: int) -> None:
        self.acknowledged.append(job_id)


def make_delivery(
    store: Store,
    queue: RecordingQueue,
    job_id: int,
    *,
    client: object = None,
    interaction: object = None,
) -> Delivery:
    """A delivery of user 1's job ``job_id`` in channel 5, through ``interaction`` if given."""
    return Delivery(
        cast(discord.Client, client),
        cast(JobQueue, queue),
        job_id=job_id,
        user_id=1,
        interaction=cast(discord.Interaction | None, interaction),
        channel_id=5,
        store=store,
        retry_delay=0.001,
    )


async def stored_job(store: Store) -> int:
    row = await jobs.create_job(
        store,
        user_id=1,
        settings=InpaintSettings.parse(seed=7),
        image=png_bytes(photo(8, 8)),
        channel_id=5,
    )
    return row.id


async def test_closing_lets_a_result_being_posted_reach_its_acknowledgement(store: Store) -> None:
    """Cancelled between posting and acknowledging, the result would be posted again after a restart."""
    interaction, queue = SlowInteraction(), RecordingQueue()
    job_id = await stored_job(store)
    delivery = make_delivery(store, queue, job_id, interaction=interaction)
    delivery.start(on_done=lambda: None)
    delivery.push(FailedEvent(job_id=job_id, user_id=1, message="The mask is empty."))
    await interaction.editing.wait()
    closing = asyncio.create_task(delivery.close())
    interaction.release.set()
    await closing
    assert queue.acknowledged == [job_id]
    assert delivery.message_id == 77


def http_error(kind: type[discord.HTTPException], status: int) -> discord.HTTPException:
    return kind(cast(Any, SimpleNamespace(status=status, reason="")), {"code": 0, "message": "no"})


class RefusingChannel(discord.abc.Messageable):
    """A channel whose every post fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def _get_channel(self) -> Any:
        return self

    async def send(self, *args: object, **kwargs: object) -> Any:
        raise self.error


class RefusingClient:
    """Knows one channel (or none); records the direct messages it is asked to send."""

    def __init__(self, channel: RefusingChannel | None) -> None:
        self.channel = channel
        self.told: list[str] = []

    def get_channel(self, channel_id: int) -> RefusingChannel | None:
        return self.channel

    async def fetch_channel(self, channel_id: int) -> object:
        raise http_error(discord.NotFound, 404)

    async def create_dm(self, user: object) -> SimpleNamespace:
        async def send(text: str) -> None:
            self.told.append(text)

        return SimpleNamespace(send=send)


async def deliver_failure(store: Store, client: RefusingClient) -> RecordingQueue:
    """A failed job's outcome, delivered to its channel (no interaction, as after a restart)."""
    queue, job_id = RecordingQueue(), await stored_job(store)
    finished = asyncio.Event()
    delivery = make_delivery(store, queue, job_id, client=client)
    delivery.start(on_done=finished.set)
    delivery.push(FailedEvent(job_id=job_id, user_id=1, message="The mask is empty."))
    await finished.wait()
    return queue


@pytest.mark.parametrize(
    "client",
    [
        RefusingClient(RefusingChannel(http_error(discord.Forbidden, 403))),  # Missing Permissions
        RefusingClient(None),  # the channel was deleted: fetching it is 404
    ],
    ids=["forbidden", "deleted"],
)
async def test_an_outcome_discord_refuses_for_good_is_acknowledged_and_its_owner_told(
    store: Store, client: RefusingClient
) -> None:
    queue = await deliver_failure(store, client)
    assert len(queue.acknowledged) == 1, "a restart would post it again, forever"
    (told,) = client.told
    assert told.startswith(f"I could not post the outcome of job {queue.acknowledged[0]} in <#5>")
    assert told.endswith("It failed: The mask is empty.")


@pytest.mark.parametrize(
    "error", [http_error(discord.DiscordServerError, 503), OSError("connection reset")]
)
async def test_an_outcome_that_failed_for_a_passing_reason_is_left_for_a_restart(
    store: Store, error: Exception
) -> None:
    client = RefusingClient(RefusingChannel(error))
    queue = await deliver_failure(store, client)
    assert queue.acknowledged == [] and client.told == []


class RecordingInteraction:
    """Records the result edit it is asked for."""

    filesize_limit = DEFAULT_UPLOAD_LIMIT

    def __init__(self) -> None:
        self.edits: list[dict[str, object]] = []

    def is_expired(self) -> bool:
        return False

    async def edit_original_response(self, **fields: object) -> SimpleNamespace:
        self.edits.append(fields)
        return SimpleNamespace(id=78, channel=SimpleNamespace(id=5))


async def test_a_result_whose_pictures_are_gone_is_told_and_acknowledged(
    store: Store, tmp_path: Any
) -> None:
    """Missing files would fail the same way at every restart: say so once, and be done."""
    interaction, queue = RecordingInteraction(), RecordingQueue()
    job_id = await stored_job(store)
    finished = asyncio.Event()
    delivery = make_delivery(store, queue, job_id, interaction=interaction)
    delivery.start(on_done=finished.set)
    gone = OutputImage(tmp_path / "gone.png", "0" * 64, seed=7, width=8, height=8)
    settings = InpaintSettings.parse(seed=7)
    delivery.push(DoneEvent(job_id, 1, (gone,), settings, "tiny", MaskSource.UPLOADED, 1.0, {}))
    await finished.wait()
    (edit,) = interaction.edits
    assert "its pictures can no longer be read" in str(edit["content"])
    assert edit["attachments"] == []
    assert queue.acknowledged == [job_id]


class EditingInteraction:
    """An interaction whose edits all succeed at once; records each edit's content."""

    filesize_limit = DEFAULT_UPLOAD_LIMIT

    def __init__(self) -> None:
        self.edits: list[object] = []

    def is_expired(self) -> bool:
        return False

    async def edit_original_response(self, **fields: object) -> SimpleNamespace:
        self.edits.append(fields["content"])
        return SimpleNamespace(id=77, channel=SimpleNamespace(id=5))


async def test_a_slow_status_record_does_not_hold_up_the_result_and_is_recorded_before_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database busy with a burst of submissions delays the record of the status message: the result
    is posted meanwhile, and recorded after it, so the job's message is the final one."""
    interaction, queue = EditingInteraction(), RecordingQueue()
    job_id = await stored_job(store)
    release = asyncio.Event()
    records: list[tuple[int, int | None]] = []
    set_job_message = jobs.set_job_message

    async def busy_database(
        store: Store, job_id: int, *, message_id: int, channel_id: int | None = None
    ) -> None:
        if not records:
            await release.wait()
        records.append((message_id, channel_id))
        await set_job_message(store, job_id, message_id=message_id, channel_id=channel_id)

    monkeypatch.setattr(jobs, "set_job_message", busy_database)
    delivery = make_delivery(store, queue, job_id, interaction=interaction)
    delivery.start(on_done=lambda: None)
    delivery.push(QueuedEvent(job_id=job_id, user_id=1, position=1, eta=None))
    async with asyncio.timeout(5):
        while not interaction.edits:
            await asyncio.sleep(0.001)
        delivery.push(FailedEvent(job_id=job_id, user_id=1, message="The mask is empty."))
        while len(interaction.edits) < 2:
            await asyncio.sleep(0.001)
    assert interaction.edits[1] == "<@1> ❌ The mask is empty."
    assert records == [] and queue.acknowledged == []
    release.set()
    await delivery.close()
    assert records == [(77, None), (77, 5)]
    assert queue.acknowledged == [job_id]
