"""Durability: jobs survive a killed process, results reach the bot, nothing runs twice."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bot.config import BotConfig
from bot.queue.base import JobSubmission
from bot.queue.events import INPUT_GONE, POISONED, DoneEvent, FailedEvent, QueuedEvent
from bot.queue.local import LocalJobQueue
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, JobStatus
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, events_until, next_event, request

REPO = Path(__file__).resolve().parents[3]

# Submits six jobs and runs them on the fake engine, which hangs forever on the fourth.
CHILD = """
import asyncio, sys, threading
from bot.config import BotConfig
from bot.queue.base import JobSubmission
from bot.queue.local import LocalJobQueue
from bot.store.database import open_store
from tests.bot.queue.fakes import FakeEngine, request

def hang_on_job_3(prompts):
    if prompts == ["job-3"]:
        threading.Event().wait()

async def main():
    config = BotConfig(
        data_dir=sys.argv[1], database_url="", batch_size=1, queue_max_per_user=10, _env_file=None
    )
    queue = LocalJobQueue(FakeEngine(on_run=hang_on_job_3), await open_store(config), config)
    await queue.start()
    for i in range(6):
        await queue.submit(JobSubmission(1, request(f"job-{i}", count=2)))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def statuses(database: Path) -> list[str]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        try:
            return [status for (status,) in connection.execute("SELECT status FROM jobs ORDER BY id")]
        except sqlite3.OperationalError:  # the schema is not there yet
            return []


def wait_for(condition: object, seconds: float = 30) -> None:
    """Poll another process's database: there is no event to await across processes."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the child process did not get there in time"
        time.sleep(0.02)


async def test_killed_mid_job_every_job_completes_exactly_once(bot_config: BotConfig) -> None:
    database = bot_config.data_dir / "inpaintbot.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(bot_config.data_dir)], cwd=REPO)
    try:
        expected = ["DONE"] * 3 + ["RUNNING"] + ["QUEUED"] * 2
        await asyncio.to_thread(wait_for, lambda: statuses(database) == expected)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    engine = FakeEngine()
    store = Store.from_config(bot_config)
    queue = LocalJobQueue(engine, store, bot_config)
    events = queue.subscribe()
    await queue.start()
    seen = await events_until(events, lambda seen: sum(isinstance(e, DoneEvent) for e in seen) == 6)
    await queue.close()

    # The three finished before the kill are delivered, not run again; the rest run once, in order.
    assert engine.calls == [["job-3"], ["job-4"], ["job-5"]]
    done = [event for event in seen if isinstance(event, DoneEvent)]
    assert sorted(event.job_id for event in done) == [1, 2, 3, 4, 5, 6]
    assert all(len(event.images) == 2 and all(i.path.is_file() for i in event.images) for event in done)
    for row in await jobs.user_jobs(store, 1):
        assert row.status is JobStatus.DONE
        assert len(row.images_with(ImageRole.OUTPUT)) == 2
        assert row.attempts == (2 if row.settings["prompt"] == "job-3" else 1)
    await store.close()


async def test_restart_queues_again_in_fair_order_running_first(
    store: Store, make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    created = [
        await jobs.create_job(
            store,
            user_id=user,
            settings=request(name).settings.with_seed(),
            image=request().image,
            mask=request().mask,
        )
        for user, name in [(1, "a1"), (2, "b1"), (1, "a2"), (3, "c1")]
    ]
    await jobs.start_job(store, created[0].id)  # a1 was running when the process died
    fake_engine.gate.clear()
    _, events = await make_queue(batch_size=1)
    positions = await events_until(events, lambda seen: len(seen) == 4)
    assert [(e.job_id, e.position) for e in positions if isinstance(e, QueuedEvent)] == [
        (created[0].id, 1),
        (created[1].id, 2),
        (created[3].id, 3),
        (created[2].id, 4),
    ]
    fake_engine.gate.set()
    await next_event(events, DoneEvent, created[2].id)
    assert fake_engine.calls == [["a1"], ["b1"], ["c1"], ["a2"]]


async def test_undelivered_results_are_sent_again_until_acknowledged(
    store: Store, make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue()
    first = await queue.submit(JobSubmission(1, request("first")))
    second = await queue.submit(JobSubmission(1, request("second")))
    await next_event(events, DoneEvent, second.job_id)
    await queue.acknowledge(first.job_id)
    await queue.close()

    _, events = await make_queue()
    again = await next_event(events, DoneEvent)
    assert again.job_id == second.job_id and again.images[0].path.is_file()
    assert len(fake_engine.calls) == 2


async def test_a_job_whose_pictures_are_gone_fails_on_restart(
    store: Store, make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    job = await jobs.create_job(
        store, user_id=1, settings=request().settings.with_seed(), image=request().image
    )
    store.files.delete(job.images[0].image.sha256)
    _, events = await make_queue()
    failed = await next_event(events, FailedEvent, job.id)
    assert failed.message == INPUT_GONE
    assert fake_engine.calls == []


# Runs the jobs stored in the data directory (submitting two first, with "new") on the fake engine; the
# process dies (SIGKILL, like a segfault in a GPU library) on the job "poison" once it is recorded
# as running and the job "fine" behind it is stored.
CRASHING_CHILD = """
import asyncio, os, signal, sqlite3, sys, time
from bot.config import BotConfig
from bot.queue.base import JobSubmission
from bot.queue.local import LocalJobQueue
from bot.store.database import open_store
from tests.bot.queue.fakes import FakeEngine, request

def crash_on_poison(prompts):
    if "poison" in prompts:
        with sqlite3.connect(sys.argv[2]) as db:
            # Both jobs stored (the second is submitted while the first starts) and the first running.
            query = "SELECT count(*), min(status) FROM jobs"  # QUEUED < RUNNING
            while db.execute(query).fetchone() != (2, "QUEUED") or db.execute(
                "SELECT status FROM jobs WHERE id = 1"
            ).fetchone() != ("RUNNING",):
                time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

async def main():
    config = BotConfig(
        data_dir=sys.argv[1], database_url="", batch_size=1, job_max_attempts=3, _env_file=None
    )
    queue = LocalJobQueue(FakeEngine(on_run=crash_on_poison), await open_store(config), config)
    await queue.start()
    if sys.argv[3] == "new":
        for prompt in ("poison", "fine"):
            await queue.submit(JobSubmission(1, request(prompt)))
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_job_that_kills_the_process_fails_after_its_attempts(bot_config: BotConfig) -> None:
    """Resumed at every start, it would take the bot down at every start, forever."""
    database = bot_config.data_dir / "inpaintbot.sqlite3"
    for start in ("new", "resume", "resume"):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHING_CHILD, str(bot_config.data_dir), str(database), start],
            cwd=REPO,
        )
        assert await asyncio.to_thread(child.wait, 60) == -signal.SIGKILL
    assert statuses(database) == ["RUNNING", "QUEUED"]

    engine = FakeEngine()
    store = Store.from_config(bot_config)
    queue = LocalJobQueue(engine, store, bot_config.model_copy(update={"job_max_attempts": 3}))
    events = queue.subscribe()
    await queue.start()
    failed = await next_event(events, FailedEvent, 1)
    await next_event(events, DoneEvent, 2)
    await queue.close()

    assert failed.message == POISONED.format(attempts=3)
    assert engine.calls == [["fine"]]
    poisoned = await jobs.get_job(store, 1)
    assert poisoned is not None and (poisoned.status, poisoned.attempts) == (JobStatus.FAILED, 3)
    await store.close()
