"""``bot.replies.refuse``: whatever the interaction's answer so far, the refusal reaches only the asker
and no message the member still needs is removed."""

from types import SimpleNamespace
from typing import Any, cast

import discord
import pytest

from bot.replies import PRIVATE, refuse

Kind = discord.InteractionResponseType


class StubInteraction:
    """Records what ``refuse`` does; ``answered`` is the response type so far (``None``: none)."""

    def __init__(self, answered: Kind | None, extras: dict[str, Any] | None = None) -> None:
        self.calls: list[str] = []
        self.extras = extras or {}
        self.user = SimpleNamespace(id=1)
        self.response = SimpleNamespace(
            is_done=lambda: answered is not None, type=answered, send_message=self._record("answer")
        )
        self.followup = SimpleNamespace(send=self._record("followup"))
        self.delete_original_response = self._record("delete original")

    def _record(self, name: str) -> Any:
        async def call(*args: object, **kwargs: object) -> None:
            assert kwargs.get("ephemeral", True), f"{name} must be ephemeral"
            self.calls.append(name)

        return call


@pytest.mark.parametrize(
    ("answered", "extras", "calls"),
    [
        (None, None, ["answer"]),
        (Kind.deferred_channel_message, None, ["delete original", "followup"]),  # public thinking
        (Kind.deferred_channel_message, {PRIVATE: True}, ["followup"]),  # its followup is private
        (Kind.deferred_message_update, None, ["followup"]),  # a button's: keep its message
    ],
    ids=["unanswered", "public-thinking", "private-thinking", "button-deferral"],
)
async def test_refuse_removes_only_a_public_thinking_message(
    answered: Kind | None, extras: dict[str, Any] | None, calls: list[str]
) -> None:
    interaction = StubInteraction(answered, extras)
    await refuse(cast(discord.Interaction, interaction), "No.")
    assert interaction.calls == calls
