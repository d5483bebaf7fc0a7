"""A failing job fails alone; time limits; graceful shutdown."""

import gc
import sqlite3
import threading
import weakref
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event

from bot.queue.base import JobSubmission
from bot.queue.events import INPUT_GONE, STUCK, UNEXPECTED_FAILURE, DoneEvent, FailedEvent, StartedEvent
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, JobStatus
from engine.errors import ModelLoadError, OutOfMemoryError
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, hold_worker, next_event, request, tiny_png


async def test_engine_errors_fail_only_their_job(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    fake_engine.errors = {
        "bad model": ModelLoadError("The model 'x' was not found."),
        "oom": OutOfMemoryError("The GPU ran out of memory on this job."),
        "bug": RuntimeError("internal detail the user must not see"),
    }
    queue, events = await make_queue(queue_max_per_user=10)
    submitted = {
        p: await queue.submit(JobSubmission(1, request(p))) for p in ("bad model", "oom", "bug", "fine")
    }
    for prompt, message in [
        ("bad model", "The model 'x' was not found."),
        ("oom", "The GPU ran out of memory on this job."),
        ("bug", UNEXPECTED_FAILURE),
    ]:
        failed = await next_event(events, FailedEvent, submitted[prompt].job_id)
        assert failed.message == message
        stored = await jobs.get_job(store, submitted[prompt].job_id)
        assert stored is not None and (stored.status, stored.error) == (JobStatus.FAILED, message)
    await next_event(events, DoneEvent, submitted["fine"].job_id)


class Activations:
    """Stands for the tensors a failed run's frames hold."""


OUT_OF_MEMORY = "The GPU ran out of memory on this job. Try a smaller resolution or fewer images."


@pytest.mark.parametrize(
    ("fits", "runs"),
    [
        (2, [["a", "b", "c", "d"], ["a", "b"], ["c", "d"]]),
        (1, [["a", "b", "c", "d"], ["a", "b"], ["a"], ["b"], ["c", "d"], ["c"], ["d"]]),
        (0, [["a", "b", "c", "d"], ["a", "b"], ["a"], ["b"], ["c", "d"], ["c"], ["d"]]),
    ],
)
async def test_a_batch_that_runs_out_of_memory_is_retried_in_halves(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store, fits: int, runs: list[list[str]]
) -> None:
    """Batches of more than ``fits`` jobs run out of memory. Every job ends: done, or failed with the
    out-of-memory message once it ran out of memory alone; a failed run's frames are let go before
    the next run starts (checked with the cyclic garbage collector off: released, not collectable)."""
    queue, events = await make_queue(batch_size=4)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker")))
    submitted = {p: await queue.submit(JobSubmission(n, request(p))) for n, p in enumerate("abcd", 1)}
    failed_runs: list[weakref.ref[Activations]] = []
    held_at_run: list[int] = []

    def out_of_memory_above_fits(prompts: list[str]) -> None:
        held_at_run.append(sum(ref() is not None for ref in failed_runs))
        if len(prompts) > fits:
            activations = Activations()
            failed_runs.append(weakref.ref(activations))
            raise OutOfMemoryError(OUT_OF_MEMORY)

    fake_engine.on_run = out_of_memory_above_fits
    gc.disable()
    try:
        fake_engine.gate.set()
        for prompt, queued in submitted.items():
            if fits:
                await next_event(events, DoneEvent, queued.job_id)
            else:
                failed = await next_event(events, FailedEvent, queued.job_id)
                assert failed.message == OUT_OF_MEMORY, prompt
    finally:
        gc.enable()
    assert fake_engine.calls[1:] == runs
    assert held_at_run == [0] * len(runs)
    for queued in submitted.values():
        stored = await jobs.get_job(store, queued.job_id)
        assert stored is not None
        assert stored.status is (JobStatus.DONE if fits else JobStatus.FAILED)


async def test_time_limit(make_queue: MakeQueue, fake_engine: FakeEngine, store: Store) -> None:
    fake_engine.step_seconds = 0.02
    queue, events = await make_queue(job_timeout=0.1)
    slow = await queue.submit(JobSubmission(1, request("slow", steps=150)))
    fast = await queue.submit(JobSubmission(2, request("fast", steps=1)))
    failed = await next_event(events, FailedEvent, slow.job_id)
    assert failed.message == "The job took longer than the limit of 0.1 seconds and was stopped."
    await next_event(events, DoneEvent, fast.job_id)


async def test_shutdown_puts_the_running_job_back(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    queue, events = await make_queue(shutdown_timeout=0.05)
    fake_engine.gate.clear()
    running = await queue.submit(JobSubmission(1, request("running")))
    waiting = await queue.submit(JobSubmission(2, request("waiting")))
    await next_event(events, StartedEvent, running.job_id)
    await queue.close()  # the job does not finish in time: it is stopped
    assert [job.id for job in await jobs.live_jobs(store)] == [running.job_id, waiting.job_id]
    assert all(job.status is JobStatus.QUEUED for job in await jobs.live_jobs(store))

    fake_engine.gate.set()
    _, events = await make_queue()
    await next_event(events, DoneEvent, running.job_id)
    await next_event(events, DoneEvent, waiting.job_id)


async def test_shutdown_lets_a_job_that_finishes_in_time_finish(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    fake_engine.step_seconds = 0.01
    queue, events = await make_queue(shutdown_timeout=30)
    running = await queue.submit(JobSubmission(1, request("running")))
    await next_event(events, StartedEvent, running.job_id)
    await queue.close()
    stored = await jobs.get_job(store, running.job_id)
    assert stored is not None and stored.status is JobStatus.DONE


async def test_a_job_whose_pictures_vanish_while_waiting_fails_alone(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    queue, events = await make_queue(queue_max_per_user=10)
    await hold_worker(queue, events, fake_engine, JobSubmission(1, request("running")))
    other = await queue.submit(JobSubmission(2, request("other")))
    doomed = await queue.submit(JobSubmission(1, replace(request("doomed"), mask=tiny_png(99))))
    assert (other.position, doomed.position) == (1, 2)  # so only "other" is prepared already
    stored = await jobs.get_job(store, doomed.job_id)
    assert stored is not None
    store.files.delete(stored.images_with(ImageRole.MASK)[0].image.sha256)

    fake_engine.gate.set()
    await next_event(events, DoneEvent, other.job_id)
    failed = await next_event(events, FailedEvent, doomed.job_id)
    assert failed.message == INPUT_GONE
    after = await queue.submit(JobSubmission(1, request("after")))
    await next_event(events, DoneEvent, after.job_id)  # the worker goes on


def refuse_once(store: Store, status: JobStatus) -> list[str]:
    """The database refuses the first write that sets a job's status to ``status`` (a full disk, an
    I/O error); returns the statements it refused."""
    refused: list[str] = []

    def check(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        if not refused and statement.startswith("UPDATE jobs SET status") and status.name in parameters:
            refused.append(statement)
            raise sqlite3.OperationalError("disk I/O error")

    event.listen(store.sql_engine.sync_engine, "before_cursor_execute", check)
    return refused


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.DONE], ids=["start", "finish"])
async def test_a_job_whose_start_or_result_cannot_be_stored_fails_and_ends(
    make_queue: MakeQueue, store: Store, status: JobStatus
) -> None:
    """Neither a row left running (run again at every start) nor a delivery that never hears the end."""
    refused = refuse_once(store, status)
    queue, events = await make_queue()
    doomed = await queue.submit(JobSubmission(1, request("doomed")))
    failed = await next_event(events, FailedEvent, doomed.job_id)
    assert failed.message == UNEXPECTED_FAILURE and refused
    after = await queue.submit(JobSubmission(1, request("after")))
    await next_event(events, DoneEvent, after.job_id)  # the worker goes on
    stored = await jobs.get_job(store, doomed.job_id)
    assert stored is not None and (stored.status, stored.error) == (JobStatus.FAILED, UNEXPECTED_FAILURE)
    assert [job.id for job in await jobs.live_jobs(store)] == []


async def test_a_job_the_gpu_hangs_on_fails_and_the_queue_says_it_is_stuck(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    """A hang in loading or decoding never looks at the job's cancel event: the time limit alone
    cannot end it."""
    release = threading.Event()
    fake_engine.on_run = lambda prompts: release.wait() if prompts == ["hangs"] else None
    queue, events = await make_queue(job_timeout=0.05, watchdog_grace=0.05)
    try:
        hung = await queue.submit(JobSubmission(1, request("hangs")))
        waiting = await queue.submit(JobSubmission(2, request("waiting")))
        failed = await next_event(events, FailedEvent, hung.job_id)
        assert failed.message == STUCK
        assert queue.stuck() == "the GPU has been busy on one job for over 0.1 seconds"
        stored = await jobs.get_job(store, hung.job_id)
        assert stored is not None and stored.status is JobStatus.FAILED
        assert [job.id for job in await jobs.live_jobs(store)] == [waiting.job_id]  # it waits
    finally:
        release.set()
    await next_event(events, DoneEvent, waiting.job_id)  # the thread came back: the queue goes on
    assert queue.stuck() is None
    assert fake_engine.calls == [["hangs"], ["waiting"]]
