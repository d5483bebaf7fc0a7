"""An unexpected failure (a bug, not the member's mistake) is answered with a short note and an error id
that leads to the traceback in the log, and the bot goes on serving."""

import logging
import re
from collections.abc import Awaitable, Callable

import pytest

from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import inpaint, refusal, result
from tests.bot.discord.test_results import delivered, mention
from tests.fakediscord import FakeDiscord

# Each makes the bot start a job on the delivered result ``message``, and returns what it told the member.
Ask = Callable[[FakeDiscord, str], Awaitable[str]]
BUG = RuntimeError("the disk is on fire")
ERROR_NOTE = re.compile(
    r"Something went wrong on the bot's side \(error id `([0-9a-f]{8})`\)\. Try again later\."
)


async def by_command(fake: FakeDiscord, message: str) -> str:
    return await refusal(fake, await inpaint(fake))


async def by_button(fake: FakeDiscord, message: str) -> str:
    return await refusal(fake, await fake.click(message, "job:reroll:1"))


async def by_reaction(fake: FakeDiscord, message: str) -> str:
    """A reaction has no interaction to answer: the note mentions the member in the channel."""
    await fake.react(message, "🔁", user=fake.owner)
    notice = (await fake.wait_for("post_message")).json["content"]
    prefix = f"{mention(fake.owner)} "
    assert notice.startswith(prefix)
    return notice.removeprefix(prefix)


@pytest.mark.parametrize("ask", [by_command, by_button, by_reaction])
async def test_an_unexpected_error_is_answered_with_an_id_that_is_in_the_log(
    fake_discord: FakeDiscord,
    start_bot: StartBot,
    gated_engine: GatedEngine,
    caplog: pytest.LogCaptureFixture,
    ask: Ask,
) -> None:
    await start_bot()
    _, message = await delivered(fake_discord, await inpaint(fake_discord))
    gated_engine.fail_next = BUG
    note = await ask(fake_discord, message)

    match = ERROR_NOTE.fullmatch(note)
    assert match, note
    (logged,) = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged.levelno == logging.ERROR and logged.exc_info and logged.exc_info[1] is BUG
    assert str(BUG) not in note, "the member is not shown the bot's internals"

    await result(fake_discord, await inpaint(fake_discord))  # and the bot goes on serving
