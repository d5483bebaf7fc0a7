"""Golden flows of /history, /show, /queue and /cancel, against the fake Discord and the tiny model."""

import asyncio

import discord
from sqlalchemy import update

from bot.cogs.jobs import PER_PAGE, history_line
from bot.config import BotConfig
from bot.store import jobs
from bot.store.database import Store
from bot.store.guilds import update_guild_settings
from bot.store.models import Image, ImageRole, Job, JobStatus, NsfwPolicy, utcnow
from engine.settings import MAX_SEED, InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_flows import inpaint_as, running_bot, statuses_shown, until
from tests.bot.discord.test_inpaint import (
    EPHEMERAL,
    JOB_TIMEOUT,
    embed_fields,
    inpaint,
    refusal,
    result,
)
from tests.bot.discord.test_results import buttons, delivered, ephemeral_answer, job, mention
from tests.bot.discord.test_server import CHECKED, job_in
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded
from tests.fakediscord.payloads import JSON
from tests.pictures import photo, png_bytes

DEFERRED_MESSAGE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT = 5, 7, 8
OTHER_GUILD = 4242


def user_id(member: JSON) -> int:
    return int(member["user"]["id"])


async def stored_job(
    fake: FakeDiscord,
    store: Store,
    member: JSON,
    *,
    prompt: str = "",
    status: JobStatus = JobStatus.QUEUED,
    guild_id: int | None = None,
    dm: JSON | None = None,
) -> int:
    """A job row written straight to the store (after the bot started, so the queue never runs it);
    made in #general, in another server (``guild_id``) or in a direct-message channel (``dm``)."""
    row = await jobs.create_job(
        store,
        user_id=user_id(member),
        settings=InpaintSettings.parse(prompt=prompt, seed=7),
        image=png_bytes(photo(8, 8)),
        guild_id=None if dm else guild_id or int(fake.guild_id),
        channel_id=int((dm or fake.channel)["id"]),
    )
    if status is JobStatus.FAILED:
        await jobs.fail_job(store, row.id, "The model broke.")
        await jobs.mark_delivered(store, row.id)  # or a restart would post the failure
    elif status is JobStatus.CANCELLED:
        await jobs.cancel_job(store, row.id)
    return row.id


async def answer(fake: FakeDiscord, it: FakeInteraction) -> Recorded:
    """The ephemeral reply to a command answered at once."""
    record = await fake.wait_for("callback", it.owns)
    assert record.json["type"] == 4 and record.json["data"]["flags"] & EPHEMERAL, record.json
    return record


async def private_reply(fake: FakeDiscord, it: FakeInteraction) -> str:
    """An ephemeral answer, at once or after an ephemeral deferral (then the deferral is answered
    first, within Discord's 3 seconds, and the answer follows)."""
    callback = await fake.wait_for("callback", it.owns)
    if callback.json["type"] == DEFERRED_MESSAGE:
        assert callback.json["data"]["flags"] & EPHEMERAL, callback.json
        followup = await fake.wait_for("followup", it.owns)
        assert followup.json["flags"] & EPHEMERAL and it.original_id in fake.messages
        return followup.json["content"]
    return await ephemeral_answer(fake, it)


async def with_embed(fake: FakeDiscord, it: FakeInteraction) -> Recorded:
    """The result (settings embed and all) shown through ``it``, with or without its pictures."""
    return await fake.wait_for(
        "edit_webhook_message", lambda r: it.owns(r) and bool(r.json.get("embeds")), timeout=JOB_TIMEOUT
    )


def link(fake: FakeDiscord, message_id: str) -> str:
    return f"https://discord.com/channels/{fake.guild_id}/{fake.channel['id']}/{message_id}"


def page_buttons(data: JSON) -> list[tuple[str, bool]]:
    return [
        (c["custom_id"], c.get("disabled", False))
        for row in data["components"]
        for c in row["components"]
    ]


# -- /history -----------------------------------------------------------------------------------------


async def test_history_pages_newest_first_and_its_buttons_work_after_a_restart(
    fake_discord: FakeDiscord, gated_engine: GatedEngine, store: Store, bot_config: BotConfig
) -> None:
    mallory = fake_discord.add_member("mallory")
    alice = user_id(fake_discord.alice)
    async with running_bot(fake_discord, gated_engine, store, bot_config):
        _, message = await delivered(
            fake_discord, await inpaint(fake_discord, prompt="a red scarf", seed=42)
        )
        await stored_job(fake_discord, store, fake_discord.owner, status=JobStatus.CANCELLED)
        for n in range(10):
            status = JobStatus.FAILED if n % 2 else JobStatus.CANCELLED
            await stored_job(fake_discord, store, fake_discord.alice, prompt=f"try *{n}*", status=status)
        it = await fake_discord.slash("history")
        first = (await answer(fake_discord, it)).json["data"]
    embed = first["embeds"][0]
    assert embed["footer"]["text"] == "Page 1 of 2 · 11 jobs"
    lines = embed["description"].split("\n")
    assert [line.split("**")[1] for line in lines[::2]] == [f"Job {n}" for n in range(12, 2, -1)]
    assert lines[0].endswith("seed 7 · ❌ failed: The model broke.") and lines[1] == r"> try \*9\*"
    assert lines[2].endswith("seed 7 · ✖ cancelled")
    assert page_buttons(first) == [(f"history:{alice}:0", True), (f"history:{alice}:2", False)]

    # A new process: the button is found again from its custom id alone.
    async with running_bot(fake_discord, gated_engine, store, bot_config):
        assert it.original_id is not None
        click = await fake_discord.click(it.original_id, f"history:{alice}:2")
        second = await fake_discord.wait_for("callback", click.owns)
        refused = await fake_discord.click(it.original_id, f"history:{alice}:1", user=mallory)
        assert "someone else's history" in await ephemeral_answer(fake_discord, refused)
    assert second.json["type"] == UPDATE_MESSAGE
    embed = second.json["data"]["embeds"][0]
    assert embed["footer"]["text"] == "Page 2 of 2 · 11 jobs"
    assert embed["description"].startswith("**Job 1** · <t:")
    assert f"seed 42 · [✅ done]({link(fake_discord, message)})\n> a red scarf" in embed["description"]
    assert page_buttons(second.json["data"]) == [
        (f"history:{alice}:1", False),
        (f"history:{alice}:3", True),
    ]


def test_a_page_of_the_longest_history_lines_fits_an_embed() -> None:
    big = 2**63 - 1
    settings = InpaintSettings.parse(prompt="*" * 2000, seed=MAX_SEED, count=4)
    row = Job(
        id=big,
        guild_id=big,
        channel_id=big,
        message_id=big,
        settings=settings.model_dump(mode="json"),
        status=JobStatus.FAILED,
        error="_" * 5000,
        created_at=utcnow(),
    )
    line = history_line(row)
    assert f"seeds {MAX_SEED}–2" in line and line.endswith("…")
    assert len("\n".join([line] * PER_PAGE)) <= 4096


async def test_history_refuses_bad_pages_and_greets_members_without_jobs(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    await start_bot()
    it = await fake_discord.slash("history", user=mallory)
    assert (await answer(fake_discord, it)).json["data"]["content"] == (
        "You have no jobs yet. Start one with /inpaint!"
    )
    for _ in range(3):
        await stored_job(fake_discord, store, fake_discord.alice, status=JobStatus.CANCELLED)
    it = await fake_discord.slash("history", {"page": 2})
    assert await ephemeral_answer(fake_discord, it) == "There is no page 2: your history has 1 page."
    it = await fake_discord.slash(
        "history", {"page": 0}
    )  # the client would refuse it; the fake does not
    assert await ephemeral_answer(fake_discord, it) == "The page must be 1 or more (got 0)."
    it = await fake_discord.slash("history", {"page": 1})
    data = (await answer(fake_discord, it)).json["data"]
    assert data["embeds"][0]["footer"]["text"] == "Page 1 of 1 · 3 jobs"
    assert not data.get("components"), "one page needs no paging buttons"


# -- /show --------------------------------------------------------------------------------------------


async def test_show_posts_the_result_again_with_working_buttons_and_reroll(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    done, first = await delivered(
        fake_discord, await inpaint(fake_discord, prompt="a red scarf", seed=42)
    )

    it = await fake_discord.slash("show", {"job": 1}, user=fake_discord.owner)
    assert (await fake_discord.wait_for("callback", it.owns)).json["type"] == 5  # public deferral
    again = await result(fake_discord, it)
    assert again.json["content"] == f"Job 1 by {mention(fake_discord.alice)}."
    assert again.json["allowed_mentions"]["parse"] == [], "showing a job again pings nobody"
    assert [f.data for f in again.files] == [f.data for f in done.files]
    assert embed_fields(again) == embed_fields(done)
    assert buttons(again) == buttons(done)
    assert it.original_id is not None and it.original_id != first
    await fake_discord.wait_for("add_reaction", lambda r: r.params["message_id"] == it.original_id)
    row = await job(store, 1)
    assert row.message_id == int(it.original_id) and row.channel_id == int(fake_discord.channel["id"])

    # Its buttons and its 🔁 work like the original's.
    click = await fake_discord.click(it.original_id, "job:reroll:1")
    assert embed_fields(await result(fake_discord, click))["Seed"] != "42"
    await fake_discord.react(it.original_id, "🔁", user=fake_discord.owner)
    reply = await fake_discord.wait_for("post_message", lambda r: bool(r.files), timeout=JOB_TIMEOUT)
    assert str(reply.json["message_reference"]["message_id"]) == it.original_id
    assert (await job(store, 3)).parent_id == 1


async def test_show_applies_the_servers_nsfw_policy_as_it_is_now(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot(**CHECKED)  # every picture is flagged; the default policy withholds them
    withheld = (
        f"{mention(fake_discord.alice)} done. 🔞 1 picture was withheld by this server's NSFW policy."
    )
    assert (await with_embed(fake_discord, await job_in(fake_discord, seed=5))).json[
        "content"
    ] == withheld

    await update_guild_settings(store, int(fake_discord.guild_id), nsfw_policy=NsfwPolicy.SPOILER)
    it = await fake_discord.slash("show", {"job": 1})
    assert [f.filename for f in (await with_embed(fake_discord, it)).files] == [
        "SPOILER_inpaint-1-5.png"
    ]

    await update_guild_settings(store, int(fake_discord.guild_id), nsfw_policy=NsfwPolicy.BLOCK)
    again = await with_embed(fake_discord, await fake_discord.slash("show", {"job": 1}))
    assert not again.files
    assert again.json["content"] == (
        f"Job 1 by {mention(fake_discord.alice)}. 🔞 1 picture was withheld by this server's NSFW policy."
    )


async def test_show_refuses_what_it_cannot_show(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    await delivered(fake_discord, await inpaint(fake_discord))
    elsewhere = await stored_job(fake_discord, store, fake_discord.alice, guild_id=OTHER_GUILD)
    queued = await stored_job(fake_discord, store, fake_discord.alice)
    failed = await stored_job(fake_discord, store, fake_discord.alice, status=JobStatus.FAILED)
    cancelled = await stored_job(fake_discord, store, fake_discord.alice, status=JobStatus.CANCELLED)

    async def show(job_id: int) -> str:
        return await refusal(fake_discord, await fake_discord.slash("show", {"job": job_id}))

    assert await show(99) == "There is no job 99."
    assert await show(elsewhere) == (
        f"Job {elsewhere} was not made in this server; /show only shows this server's jobs."
    )
    assert await show(queued) == f"Job {queued} is still queued; its result is posted when it is done."
    assert await show(failed) == f"Job {failed} failed, so it has no result to show: The model broke."
    assert await show(cancelled) == f"Job {cancelled} was cancelled, so it has no result to show."

    (output,) = (await job(store, 1)).images_with(ImageRole.OUTPUT)
    jobs.image_path(store, output.image).unlink()  # gone from the disk by hand
    assert await show(1) == "The pictures of job 1 were cleaned up, so it cannot be shown again."
    async with store.sessions.begin() as session:  # what retention records
        await session.execute(
            update(Image).where(Image.id == output.image.id).values(purged_at=utcnow())
        )
    assert await show(1) == "The pictures of job 1 were cleaned up, so it cannot be shown again."


async def test_jobs_made_in_direct_messages_stay_there(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    moderator = fake_discord.add_member("mod", permissions=discord.Permissions(manage_guild=True))
    alices_dm, mallorys_dm = fake_discord.add_dm(fake_discord.alice), fake_discord.add_dm(mallory)
    await start_bot()
    in_server = await stored_job(fake_discord, store, fake_discord.alice, status=JobStatus.CANCELLED)
    private = await stored_job(fake_discord, store, fake_discord.alice, dm=alices_dm)

    async def show(job_id: int, member: JSON, channel: JSON | None = None) -> str:
        it = await fake_discord.slash("show", {"job": job_id}, user=member, channel=channel)
        return await refusal(fake_discord, it)

    not_here = (
        "was not made in your direct messages with the bot; show it in the server where it was made."
    )
    assert await show(in_server, fake_discord.alice, alices_dm) == f"Job {in_server} {not_here}"
    assert await show(private, mallory, mallorys_dm) == f"Job {private} {not_here}"
    assert await show(private, fake_discord.alice) == (
        f"Job {private} was not made in this server; /show only shows this server's jobs."
    )
    assert await show(private, fake_discord.alice, alices_dm) == (
        f"Job {private} is still queued; its result is posted when it is done."
    )
    it = await fake_discord.slash("cancel", {"job": private}, user=moderator)
    assert (await ephemeral_answer(fake_discord, it)).startswith(
        f"Job {private} was not made in this server"
    )


async def test_show_suggests_the_members_finished_jobs_of_this_server(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    await delivered(fake_discord, await inpaint(fake_discord, prompt="a red scarf"))
    await stored_job(fake_discord, store, fake_discord.alice, prompt="still waiting")
    it = await fake_discord.slash("show", {"job": ""}, focused="job")
    reply = await fake_discord.wait_for("callback", it.owns)
    assert reply.json["type"] == AUTOCOMPLETE_RESULT
    assert reply.json["data"]["choices"] == [{"name": "1 · done · a red scarf", "value": 1}]


# -- /queue and /cancel ------------------------------------------------------------------------------


async def test_queue_shows_the_counts_and_the_members_own_places(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    gated_engine.gate.clear()
    await start_bot(edit_interval=0)
    mine = await inpaint(fake_discord)
    await asyncio.to_thread(gated_engine.waiting.wait, JOB_TIMEOUT)  # job 1 runs, held at the gate
    theirs = await inpaint_as(fake_discord, fake_discord.owner)
    await fake_discord.wait_for("edit_webhook_message", theirs.owns)  # job 2 is queued before job 3
    later = await inpaint(fake_discord)
    await statuses_shown(store, 1, 2, 3)

    it = await fake_discord.slash("queue")
    assert mine.original_id and later.original_id
    assert (await answer(fake_discord, it)).json["data"]["content"] == "\n".join(
        [
            "**1** running, **2** waiting.",
            f"[Job 1]({link(fake_discord, mine.original_id)}): 🎨 Running.",
            f"[Job 3]({link(fake_discord, later.original_id)}): ⏳ Queued: position 2.",  # fair turns
        ]
    )
    it = await fake_discord.slash("queue", user=mallory)
    assert (await answer(fake_discord, it)).json["data"]["content"] == (
        "**1** running, **2** waiting.\nYou have no jobs waiting or running."
    )
    gated_engine.gate.set()
    for started in (mine, theirs, later):
        await result(fake_discord, started)


async def test_cancel_own_latest_or_named_and_manage_server_may_cancel_any(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    moderator = fake_discord.add_member("mod", permissions=discord.Permissions(manage_guild=True))
    gated_engine.gate.clear()
    await start_bot(edit_interval=0)
    first = await inpaint(fake_discord)
    await asyncio.to_thread(gated_engine.waiting.wait, JOB_TIMEOUT)
    second = await inpaint(fake_discord)
    await statuses_shown(store, 1, 2)
    elsewhere = await stored_job(fake_discord, store, fake_discord.alice, guild_id=OTHER_GUILD)

    async def cancel(member: JSON, **options: int) -> str:
        return await private_reply(
            fake_discord, await fake_discord.slash("cancel", options, user=member)
        )

    it = await fake_discord.slash("cancel", {"job": ""}, focused="job")
    choices = (await fake_discord.wait_for("callback", it.owns)).json["data"]["choices"]
    assert [choice["value"] for choice in choices] == [elsewhere, 2, 1]

    assert await cancel(mallory) == "You have no job waiting or running to cancel."
    assert await cancel(mallory, job=2) == (
        "Job 2 is someone else's; only members who may manage the server can cancel other members' jobs."
    )
    assert await cancel(fake_discord.alice, job=99) == "There is no job 99."
    assert await cancel(moderator, job=elsewhere) == (
        f"Job {elsewhere} was not made in this server; you can cancel other members' jobs only where "
        "you manage the server."
    )
    await jobs.cancel_job(store, elsewhere)  # alice's latest live job is job 2 from here on

    assert await cancel(fake_discord.alice) == "Cancelled job 2."
    await fake_discord.wait_for(
        "edit_webhook_message", lambda r: second.owns(r) and "cancelled" in r.json["content"]
    )
    assert (await job(store, 2)).status is JobStatus.CANCELLED
    assert await cancel(fake_discord.alice, job=2) == (
        "Job 2 was already cancelled; only waiting or running jobs can be cancelled."
    )

    await until(store, 1, lambda row: row.status is JobStatus.RUNNING)
    assert await cancel(moderator, job=1) == "Stopping job 1; it ends within a step."
    gated_engine.gate.set()  # the run goes on to its first step, where it stops
    stopped = await fake_discord.wait_for(
        "edit_webhook_message",
        lambda r: first.owns(r) and "cancelled" in r.json["content"],
        timeout=JOB_TIMEOUT,
    )
    assert stopped.json["content"] == f"{mention(fake_discord.alice)} job 1 was cancelled."
    assert (await job(store, 1)).status is JobStatus.CANCELLED


async def test_show_keeps_to_the_allowed_channels_and_to_its_owner_once_deleted(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    art = fake_discord.add_channel("art")
    await start_bot()
    _, message = await delivered(fake_discord, await inpaint(fake_discord))
    await update_guild_settings(store, int(fake_discord.guild_id), allowed_channel_ids=[int(art["id"])])
    it = await fake_discord.slash("show", {"job": 1})
    assert await refusal(fake_discord, it) == (
        f"Jobs don't run in this channel on this server. Use <#{art['id']}> "
        "(or a thread in one of them)."
    )

    await fake_discord.click(message, "job:delete:1")  # 🗑 by its owner
    await fake_discord.wait_for("delete_message", lambda r: r.params["message_id"] == message)
    it = await fake_discord.slash("show", {"job": 1}, user=fake_discord.owner, channel=art)
    assert await refusal(fake_discord, it) == (
        "Job 1's result was deleted from the channel (🗑), so only the member who ran it can show "
        "it again."
    )
    it = await fake_discord.slash("show", {"job": 1}, channel=art)
    assert (await with_embed(fake_discord, it)).json[
        "content"
    ] == f"Job 1 by {mention(fake_discord.alice)}."


async def test_show_needs_the_jobs_channel_in_view_or_its_owner(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    """Job numbers are sequential: without this, anyone could repost pictures from staff channels
    and private threads."""
    mallory = fake_discord.add_member("mallory")
    staff = fake_discord.add_private_channel("staff", fake_discord.alice)
    secret = fake_discord.add_thread(fake_discord.channel, "secret", private=True)
    await start_bot()
    await delivered(fake_discord, await job_in(fake_discord, staff))  # job 1, by alice
    await delivered(fake_discord, await job_in(fake_discord, secret, user=fake_discord.owner))

    async def show(job_id: int, member: JSON) -> FakeInteraction:
        return await fake_discord.slash("show", {"job": job_id}, user=member)

    assert await refusal(fake_discord, await show(1, mallory)) == (
        "Job 1 was made in a channel you cannot view, so you cannot show it here."
    )
    assert await refusal(fake_discord, await show(2, mallory)) == (
        "Job 2 was made in a channel you cannot view, so you cannot show it here."
    )
    assert await refusal(fake_discord, await show(2, fake_discord.alice)) == (
        "Job 2 was made in a channel you cannot view, so you cannot show it here."
    )
    # Its owner, and members who see the channel (or are in the thread), may.
    shown = (await with_embed(fake_discord, await show(1, fake_discord.alice))).json["content"]
    assert shown == f"Job 1 by {mention(fake_discord.alice)}."
    await with_embed(fake_discord, await show(2, fake_discord.owner))
    fake_discord.thread_members[secret["id"]].add(fake_discord.alice["user"]["id"])
    await with_embed(fake_discord, await show(2, fake_discord.alice))


async def test_queue_lists_at_most_ten_of_a_members_jobs(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    gated_engine.gate.clear()
    await start_bot(queue_max_per_user=12)
    started = [await inpaint_as(fake_discord, fake_discord.alice) for _ in range(12)]
    await statuses_shown(store, *range(1, 13))
    it = await fake_discord.slash("queue")
    content = (await answer(fake_discord, it)).json["data"]["content"]
    lines = content.split("\n")
    assert len(lines) == 12 and lines[0] == "**1** running, **11** waiting."
    assert [line.split("]")[0] for line in lines[1:11]] == [f"[Job {n}" for n in range(1, 11)]
    assert lines[11] == "…and 2 more of yours (see /history)."
    options = {
        c["name"]: c["options"] for c in fake_discord.commands[None] if c["name"] in ("show", "cancel")
    }
    assert {o["max_value"] for opts in options.values() for o in opts} == {2**31 - 1}  # int4 ids
    gated_engine.gate.set()
    for it in started:
        await result(fake_discord, it)
