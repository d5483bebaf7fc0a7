"""Golden flows of /preset and of a result's 💾, against the fake Discord (and the tiny model where a
preset is used by /inpaint)."""

from typing import Any

import discord
import pytest

from bot.store.database import Store
from bot.store.guilds import get_guild_settings, update_guild_settings
from bot.store.presets import default_preset, get_preset, list_presets, save_preset
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import StartBot
from tests.bot.discord.test_inpaint import EPHEMERAL, embed_fields, inpaint, result
from tests.bot.discord.test_results import delivered, ephemeral_answer, job, open_modal
from tests.fakediscord import FakeDiscord, FakeInteraction
from tests.fakediscord.payloads import JSON

UPDATE_MESSAGE = 7
TOO_LONG = "A preset name must be 1 to 32 characters long."


def uid(member: JSON) -> int:
    return int(member["user"]["id"])


async def answer(fake: FakeDiscord, it: FakeInteraction) -> JSON:
    """The ephemeral message a /preset command answered with (content, embeds, components)."""
    record = await fake.wait_for("callback", it.owns)
    assert record.json["type"] == 4 and record.json["data"]["flags"] & EPHEMERAL, record.json
    return record.json["data"]


async def preset(fake: FakeDiscord, command: str, user: JSON | None = None, **options: Any) -> str:
    """Runs ``/preset <command>`` and returns the text of its ephemeral answer."""
    it = await fake.slash(f"preset {command}", options, user=user)
    return (await answer(fake, it))["content"]


def button_ids(message: JSON) -> dict[str, str]:
    """A message's buttons: custom id by label."""
    return {c["label"]: c["custom_id"] for row in message["components"] for c in row["components"]}


def disabled(message: JSON) -> dict[str, bool]:
    """Whether each of a message's buttons is disabled, by label."""
    return {
        c["label"]: c.get("disabled", False) for row in message["components"] for c in row["components"]
    }


async def click(fake: FakeDiscord, it: FakeInteraction, label: str, user: JSON | None = None) -> JSON:
    """Clicks a button on the answer to ``it``; returns the click's callback."""
    assert it.original_id is not None
    pressed = await fake.click(
        it.original_id, button_ids(fake.message(it.original_id))[label], user=user
    )
    return (await fake.wait_for("callback", pressed.owns)).json


async def test_save_show_list_and_delete(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    alice = uid(fake_discord.alice)
    saved = await preset(
        fake_discord, "save", name=" Portrait ", steps=40, sampler="ddim", prompt="a_red *scarf*"
    )
    assert saved == "Saved preset **Portrait**: you can use it with `/inpaint preset:Portrait`."
    stored = await get_preset(store, alice, "portrait")
    assert stored.settings == {"prompt": "a_red *scarf*", "steps": 40, "sampler": "ddim"}

    it = await fake_discord.slash("preset show", {"name": "PORTRAIT"})
    (embed,) = (await answer(fake_discord, it))["embeds"]
    assert embed["title"] == "Preset Portrait"
    assert embed["description"] == "**prompt**\na\\_red \\*scarf\\*"
    assert {f["name"]: f["value"] for f in embed["fields"]} == {"steps": "40", "sampler": '"ddim"'}

    it = await fake_discord.slash("preset list")
    data = await answer(fake_discord, it)
    (embed,) = data["embeds"]
    assert "components" not in data and "footer" not in embed
    assert embed["description"].splitlines() == [
        "You have 1 of 25 presets. You have no default preset (`/preset default`).",
        "",
        '**Portrait**: prompt "a\\_red \\*scarf\\*" · steps 40 · sampler "ddim"',
    ]

    assert await preset(fake_discord, "delete", name="portrait") == "Deleted preset **Portrait**."
    assert await list_presets(store, alice) == []
    assert await preset(fake_discord, "delete", name="portrait") == (
        "You have no preset called 'portrait', and neither does this server. "
        "`/preset list` shows the ones you can use."
    )
    assert await preset(fake_discord, "show", name="portrait", scope="user") == (
        "You have no preset called 'portrait'."
    )
    assert await preset(fake_discord, "list") == (
        "There are no presets yet: save one with `/preset save` or 💾 under a result."
    )


async def test_save_refuses_bad_input_and_the_cap(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot(max_presets_per_user=2)
    assert await preset(fake_discord, "save", name="empty") == (
        "A preset needs at least one setting: add the options it should set, e.g. `steps` or `prompt`."
    )
    # The client enforces lengths and ranges; the fake sends anything, like a modified client could.
    assert await preset(fake_discord, "save", name="x" * 33, steps=5) == TOO_LONG
    assert await preset(fake_discord, "save", name="   ", steps=5) == TOO_LONG
    assert await preset(fake_discord, "save", name="a", steps=500) == (
        "steps must be between 1 and 150 (got 500)."
    )
    refused = await preset(fake_discord, "save", name="a", model="someone/any-model")
    assert refused.startswith("Unknown model 'someone/any-model'. This bot offers:")
    for name in ("a", "b"):
        assert (await preset(fake_discord, "save", name=name, steps=5)).startswith("Saved")
    assert await preset(fake_discord, "save", name="c", steps=5) == (
        "You have 2 presets, the most allowed (2). Delete one or save under an existing name."
    )
    assert [p.name for p in await list_presets(store, uid(fake_discord.alice))] == ["a", "b"]


async def test_a_taken_name_asks_before_replacing(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    await start_bot()
    alice = uid(fake_discord.alice)
    await preset(fake_discord, "save", name="Portrait", steps=10)

    it = await fake_discord.slash("preset save", {"name": "portrait", "steps": 20})
    ask = await answer(fake_discord, it)
    assert ask["content"] == (
        "You already have a preset **Portrait** (steps 10). Replace it with the new settings (steps 20)?"
    )
    assert list(button_ids(ask)) == ["Replace", "Keep"]
    refused = await click(fake_discord, it, "Replace", user=mallory)
    assert refused["type"] == 4 and refused["data"]["flags"] & EPHEMERAL
    assert refused["data"]["content"] == "Only the person who asked can use these buttons."
    kept = await click(fake_discord, it, "Keep")
    assert kept["type"] == UPDATE_MESSAGE and kept["data"]["components"] == []
    assert kept["data"]["content"] == "Kept preset **Portrait** as it was (steps 10)."
    assert (await get_preset(store, alice, "portrait")).settings == {"steps": 10}

    it = await fake_discord.slash("preset save", {"name": "portrait", "steps": 20})
    await answer(fake_discord, it)
    replaced = await click(fake_discord, it, "Replace")
    assert replaced["data"]["content"] == (
        "Replaced preset **portrait**: you can use it with `/inpaint preset:portrait`."
    )
    assert [(p.name, p.settings) for p in await list_presets(store, alice)] == [
        ("portrait", {"steps": 20})
    ]


async def test_unanswered_buttons_are_removed_when_they_expire(
    fake_discord: FakeDiscord, start_bot: StartBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.ui.presets.VIEW_TIMEOUT", 0.2)
    await start_bot()
    await preset(fake_discord, "save", name="p", steps=10)
    it = await fake_discord.slash("preset save", {"name": "p", "steps": 20})
    await answer(fake_discord, it)
    expired = await fake_discord.wait_for("edit_webhook_message", it.owns)
    assert expired.json["components"] == []
    assert it.original_id is not None and fake_discord.message(it.original_id)["components"] == []


async def test_server_presets_need_manage_server_and_every_member_can_use_them(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    manager = fake_discord.add_member("manager", permissions=discord.Permissions(manage_guild=True))
    await start_bot()
    guild = int(fake_discord.guild_id)
    assert await preset(fake_discord, "save", name="house", scope="server", guidance=5) == (
        "Only members with the Manage Server permission can save server presets."
    )
    saved = await preset(fake_discord, "save", manager, name="house", scope="server", guidance=5)
    assert saved.startswith("Saved server preset **house**: everyone here can use it with")
    options = {"name": "House", "scope": "server", "guidance": 5.5}
    it = await fake_discord.slash("preset save", options, user=manager)
    assert (await answer(fake_discord, it))["content"] == (
        "This server already has a server preset **house** (guidance 5). "
        "Replace it with the new settings (guidance 5.5)?"
    )
    assert (await click(fake_discord, it, "Keep", user=manager))["data"]["content"] == (
        "Kept server preset **house** as it was (guidance 5)."
    )
    # A member's own preset of the same name is a different preset.
    await preset(fake_discord, "save", name="house", guidance=9)

    done = await result(fake_discord, await inpaint(fake_discord, preset="house"))
    assert embed_fields(done)["Guidance"] == "9", "the member's own preset comes first"
    await preset(fake_discord, "delete", name="house")
    done = await result(fake_discord, await inpaint(fake_discord, preset="house"))
    assert embed_fields(done)["Guidance"] == "5"

    it = await fake_discord.slash("preset show", {"name": "house"})
    (embed,) = (await answer(fake_discord, it))["embeds"]
    assert embed["title"] == "Server preset house"
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "guidance": "5",
        "saved by": f"<@{manager['user']['id']}>",
    }

    assert await preset(fake_discord, "delete", name="house") == (
        "You have no preset called 'house'; this server has one: add `scope:server` to delete it."
    )
    assert await preset(fake_discord, "delete", name="house", scope="server") == (
        "Only members with the Manage Server permission can delete server presets."
    )
    house = await get_preset(store, uid(manager), "house", guild_id=guild)
    await update_guild_settings(store, guild, default_preset_id=house.id)
    assert await preset(fake_discord, "delete", manager, name="HOUSE", scope="server") == (
        "Deleted server preset **house**. It was this server's default preset, so the server has none now."
    )
    assert await list_presets(store, uid(manager), guild_id=guild) == []
    assert (await get_guild_settings(store, guild)).default_preset_id is None  # the database cleared it


async def test_a_default_preset_applies_to_inpaint_until_cleared_or_deleted(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    alice = uid(fake_discord.alice)
    await preset(fake_discord, "save", name="soft", guidance=4, sampler="ddim")
    await preset(fake_discord, "save", name="strong", guidance=12)
    assert await preset(fake_discord, "default", name="Soft") == (
        'Your default preset is now the preset **soft** (guidance 4 · sampler "ddim"). '
        "`/inpaint` applies it first; a `preset:` and the options you set win over it."
    )
    fields = embed_fields(await result(fake_discord, await inpaint(fake_discord)))
    assert (fields["Guidance"], fields["Sampler"]) == ("4", "ddim")
    fields = embed_fields(await result(fake_discord, await inpaint(fake_discord, preset="strong")))
    assert (fields["Guidance"], fields["Sampler"]) == ("12", "ddim")

    it = await fake_discord.slash("preset list")
    (embed,) = (await answer(fake_discord, it))["embeds"]
    assert embed["description"].splitlines()[2:] == [
        '**soft** · your default: guidance 4 · sampler "ddim"',
        "**strong**: guidance 12",
    ]

    assert await preset(fake_discord, "default") == (
        "You have no default preset now: `/inpaint` starts from the built-in settings "
        "(and the server's default preset, if it has one)."
    )
    assert await default_preset(store, alice) is None
    await preset(fake_discord, "default", name="soft")
    assert await preset(fake_discord, "delete", name="soft") == (
        "Deleted preset **soft**. It was your default preset, so you have none now."
    )
    assert await default_preset(store, alice) is None  # the database cleared it
    assert await preset(fake_discord, "default", name="soft") == (
        "You have no preset called 'soft', and neither does this server. "
        "`/preset list` shows the ones you can use."
    )
    fields = embed_fields(await result(fake_discord, await inpaint(fake_discord)))
    assert (fields["Guidance"], fields["Sampler"]) == ("7", "euler_a")


async def test_list_pages_through_own_and_server_presets(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    await start_bot()
    alice, owner, guild = uid(fake_discord.alice), uid(fake_discord.owner), int(fake_discord.guild_id)
    for number in range(12):
        await save_preset(
            store, alice, f"mine {number:02}", InpaintSettings.parse(steps=number + 1), max_per_user=25
        )
    for name in ("house", "night"):
        await save_preset(
            store, owner, name, InpaintSettings.parse(prompt=name), max_per_user=25, guild_id=guild
        )
    night = await get_preset(store, owner, "night", guild_id=guild)
    await update_guild_settings(store, guild, default_preset_id=night.id)

    it = await fake_discord.slash("preset list")
    data = await answer(fake_discord, it)
    (embed,) = data["embeds"]
    assert embed["title"] == "Your presets and this server's"
    assert embed["footer"]["text"] == "Page 1 of 2"
    lines = embed["description"].splitlines()
    assert lines[0] == "You have 12 of 25 presets. You have no default preset (`/preset default`)."
    assert lines[2:] == [f"**mine {n:02}**: steps {n + 1}" for n in range(10)]
    assert disabled(data) == {"Previous": True, "Next": False}

    refused = await click(fake_discord, it, "Next", user=mallory)
    assert refused["data"]["content"] == "Only the person who asked can use these buttons."
    page = await click(fake_discord, it, "Next")
    assert page["type"] == UPDATE_MESSAGE
    (embed,) = page["data"]["embeds"]
    assert embed["footer"]["text"] == "Page 2 of 2"
    assert embed["description"].splitlines()[2:] == [
        "**mine 10**: steps 11",
        "**mine 11**: steps 12",
        '**house** (server): prompt "house"',
        '**night** (server) · server default: prompt "night"',
    ]
    assert disabled(page["data"]) == {"Previous": False, "Next": True}
    back = await click(fake_discord, it, "Previous")
    assert back["data"]["embeds"][0]["footer"]["text"] == "Page 1 of 2"


async def test_name_autocomplete_marks_server_presets_and_follows_the_scope(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    alice, owner, guild = uid(fake_discord.alice), uid(fake_discord.owner), int(fake_discord.guild_id)
    await save_preset(store, alice, "Style A", InpaintSettings.parse(steps=5), max_per_user=25)
    await save_preset(
        store, owner, "style B", InpaintSettings.parse(steps=5), max_per_user=25, guild_id=guild
    )
    await save_preset(store, owner, "other", InpaintSettings.parse(steps=5), max_per_user=25)

    async def choices(command: str, **options: str) -> list[tuple[str, str]]:
        it = await fake_discord.slash(f"preset {command}", options, focused="name")
        reply = await fake_discord.wait_for("callback", it.owns)
        assert reply.json["type"] == 8
        return [(c["name"], c["value"]) for c in reply.json["data"]["choices"]]

    both = [("Style A", "Style A"), ("style B (server)", "server:style B")]
    assert await choices("show", name="STYLE") == both
    assert await choices("default", name="") == both
    assert await choices("delete", name="style", scope="server") == [
        ("style B (server)", "server:style B")
    ]
    assert await choices("delete", name="style", scope="user") == [("Style A", "Style A")]
    # The value the autocomplete gives a server preset works where a name is asked for.
    shown = await answer(
        fake_discord, await fake_discord.slash("preset show", {"name": "server:style B"})
    )
    assert shown["embeds"][0]["title"] == "Server preset style B"


async def test_a_picked_server_preset_wins_over_an_own_one_of_the_same_name(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    alice, owner, guild = uid(fake_discord.alice), uid(fake_discord.owner), int(fake_discord.guild_id)
    await save_preset(store, alice, "House", InpaintSettings.parse(guidance=5), max_per_user=25)
    await save_preset(
        store, owner, "house", InpaintSettings.parse(guidance=7), max_per_user=25, guild_id=guild
    )
    await result(fake_discord, await inpaint(fake_discord, preset="server:house"))
    await result(fake_discord, await inpaint(fake_discord, preset="house"))
    guidance = [(await job(store, job_id)).inpaint_settings().guidance for job_id in (1, 2)]
    assert guidance == [7, 5]  # the server's when picked as such, else the member's own first
    assert await preset(fake_discord, "save", name="server:mine", steps=3) == (
        "A preset name cannot start with `server:`: it marks server presets."
    )


async def test_server_presets_stay_in_the_autocomplete_of_a_member_with_many(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    alice, owner, guild = uid(fake_discord.alice), uid(fake_discord.owner), int(fake_discord.guild_id)
    for i in range(25):
        await save_preset(store, alice, f"mine {i}", InpaintSettings.parse(steps=5), max_per_user=25)
    await save_preset(
        store, owner, "shared", InpaintSettings.parse(steps=7), max_per_user=25, guild_id=guild
    )
    it = await fake_discord.slash("inpaint", {"preset": ""}, focused="preset")
    reply = await fake_discord.wait_for("callback", it.owns)
    values = [c["value"] for c in reply.json["data"]["choices"]]
    assert len(values) == 25 and values[-1] == "server:shared"


async def test_save_preset_button_asks_before_replacing(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    alice = uid(fake_discord.alice)
    await preset(fake_discord, "save", name="Scarf", steps=9)
    _, message = await delivered(fake_discord, await inpaint(fake_discord, prompt="a red scarf"))

    modal = await open_modal(fake_discord, message, "job:preset:1")
    submitted = await fake_discord.submit_modal(modal, {"name": "scarf"}, message=message)
    ask = await ephemeral_answer(fake_discord, submitted)
    assert ask.startswith(
        "You already have a preset **Scarf** (steps 9). Replace it with the new settings ("
    )
    assert (await get_preset(store, alice, "scarf")).settings == {"steps": 9}
    replaced = await click(fake_discord, submitted, "Replace")
    assert replaced["data"]["content"].startswith("Replaced preset **scarf**")
    settings = (await get_preset(store, alice, "scarf")).settings
    assert settings["prompt"] == "a red scarf" and settings["steps"] == 3 and "seed" not in settings


async def test_direct_messages_have_only_the_members_own_presets(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    owner, guild = uid(fake_discord.owner), int(fake_discord.guild_id)
    await save_preset(
        store, owner, "house", InpaintSettings.parse(steps=5), max_per_user=25, guild_id=guild
    )
    dm = fake_discord.add_dm(fake_discord.owner)

    async def in_dm(command: str, **options: Any) -> JSON:
        it = await fake_discord.slash(f"preset {command}", options, user=fake_discord.owner, channel=dm)
        return await answer(fake_discord, it)

    not_here = "Server presets belong to a server: use this command in one."
    assert (await in_dm("save", name="house", scope="server", steps=6))["content"] == not_here
    assert (await in_dm("show", name="house", scope="server"))["content"] == not_here
    assert (await in_dm("delete", name="house", scope="server"))["content"] == not_here
    assert (await in_dm("show", name="house"))["content"] == "You have no preset called 'house'."
    assert (await in_dm("save", name="mine", steps=6))["content"].startswith("Saved preset **mine**")
    (embed,) = (await in_dm("list"))["embeds"]
    assert embed["title"] == "Your presets"
    assert embed["description"].splitlines()[2:] == ["**mine**: steps 6"]


async def test_show_fits_the_longest_prompts_into_one_embed(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    longest = InpaintSettings.parse(prompt="blue_eyes " * 200, negative_prompt="*" * 2000)
    await save_preset(store, uid(fake_discord.alice), "long", longest, max_per_user=25)
    it = await fake_discord.slash("preset show", {"name": "long"})
    (embed,) = (await answer(fake_discord, it))["embeds"]
    prompt, negative = embed["description"].split("\n**negative_prompt**\n")
    assert len(embed["description"]) <= 4096  # Discord's limit for an embed's description
    assert prompt.startswith("**prompt**\nblue\\_eyes blue\\_eyes") and prompt.endswith("…")
    assert negative.startswith("\\*\\*") and negative.endswith("…")


async def test_preset_save_offers_the_settings_options_of_inpaint(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    synced = {command["name"]: command for command in fake_discord.commands[None]}
    subcommands = {option["name"]: option for option in synced["preset"]["options"]}
    assert set(subcommands) == {"save", "list", "show", "delete", "default"}
    inpaint_options = {o["name"]: o for o in synced["inpaint"]["options"]}
    save_options = {o["name"]: o for o in subcommands["save"]["options"]}
    assert set(inpaint_options) - set(save_options) == {"image", "mask", "preset", "seed"}
    assert set(save_options) - set(inpaint_options) == {
        "name",
        "scope",
        "control_start",
        "control_end",
        "tile_downsample",
    }
    for name in set(inpaint_options) & set(save_options):
        assert save_options[name] == inpaint_options[name] | {"required": False}, name
    assert save_options["name"]["max_length"] == 32
