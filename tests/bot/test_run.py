"""``inpaintbot run`` and the Discord settings of BotConfig."""

import discord
import pytest
import yarl

from bot.cli import main
from bot.client import PERMISSIONS, invite_url, point_at_discord
from bot.config import BotConfig


def test_discord_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token")
    monkeypatch.setenv("INPAINTBOT_GUILD_IDS", "123, 456")
    monkeypatch.setenv("INPAINTBOT_DISCORD_API_BASE", "http://proxy:8080/api/v10")
    config = BotConfig(_env_file=None)
    assert config.discord_token is not None and config.discord_token.get_secret_value() == "secret-token"
    assert "secret-token" not in repr(config) and "secret-token" not in str(config.model_dump())
    assert config.guild_ids == [123, 456]
    assert config.discord_api_base == "http://proxy:8080/api/v10"


def test_commands_sync_globally_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INPAINTBOT_GUILD_IDS", raising=False)
    assert BotConfig(_env_file=None).guild_ids == []


def test_run_without_a_token_explains_how_to_create_and_invite_the_bot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_status:
        main(["run"])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: DISCORD_TOKEN is not set.")
    assert "scope=bot+applications.commands&permissions=116800" in err
    assert "Send Messages, Attach Files, Embed Links,\n     Add Reactions, Read Message History" in err


def test_the_invite_asks_for_exactly_the_needed_permissions() -> None:
    assert (
        discord.Permissions(
            send_messages=True,
            attach_files=True,
            embed_links=True,
            add_reactions=True,
            read_message_history=True,
        )
        == PERMISSIONS
    )
    assert invite_url("42").endswith("client_id=42&scope=bot+applications.commands&permissions=116800")


def test_proxies_redirect_rest_and_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )
    config = BotConfig(
        discord_api_base="http://rest-proxy/api/v10/",
        discord_gateway_url="ws://gateway-proxy:8081",
        _env_file=None,
    )
    point_at_discord(config)
    assert discord.http.Route.BASE == "http://rest-proxy/api/v10"
    assert yarl.URL("ws://gateway-proxy:8081") == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
