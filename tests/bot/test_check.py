"""``inpaintbot check``: one line per check, a specific reason for each failure, the token never shown."""

import sqlite3
from pathlib import Path

import discord
import pytest
import torch
from aiohttp import web
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.check.report import print_checks, run_checks
from bot.check.result import Check
from bot.check.services import check_painter, check_workers
from bot.cli import main
from bot.config import BotConfig
from bot.queue.streams import Keys, WorkerInfo
from bot.store.migrate import upgrade
from tests.engine.test_safety import build_tiny_checker
from tests.fakediscord import FakeDiscord, payloads
from tests.fakediscord.fixtures import fake_discord as fake_discord
from tests.support.servers import free_port
from tests.support.tiny_models import build_tiny_controlnet, build_tiny_sdxl


@pytest.fixture(scope="module")
def tiny_controlnet(tiny_sd_regular_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_controlnet(tmp_path_factory.mktemp("controlnet"), tiny_sd_regular_path)


@pytest.fixture
def config(
    bot_config: BotConfig, tiny_sd_path: Path, tiny_controlnet: Path, tiny_word_models: tuple[Path, Path]
) -> BotConfig:
    return bot_config.model_copy(
        update={
            "model": str(tiny_sd_path),
            "device": "cpu",
            "discord_token": SecretStr(FakeDiscord.token),
            "controlnet_tile": str(tiny_controlnet),
            "controlnet_inpaint": str(tiny_controlnet),
            "controlnet_tile_sdxl": None,
            "mask_detector": str(tiny_word_models[0]),
            "mask_segmenter": str(tiny_word_models[1]),
        }
    )


async def checks(config: BotConfig) -> dict[str, Check]:
    return {check.name: check async for check in run_checks(lambda: config)}


def details(results: dict[str, Check]) -> dict[str, str]:
    return {name: f"{check.status} {check.detail}" for name, check in results.items()}


async def test_a_ready_installation(
    config: BotConfig, fake_discord: FakeDiscord, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await print_checks(lambda: config) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   config", "ok   token", "ok   data", "ok   database", "warn device",
        "ok   model", "warn controlnets", "warn safety", "ok   masks", "ok   painter", "ok   discord",
        "ok   invite",
    ]  # fmt: skip
    assert "is new; the bot creates its tables when it starts" in lines[3]
    assert "cpu, as INPAINTBOT_DEVICE says" in lines[4]
    assert "SD 1.x/2.x inpainting (9-channel), 64 px, loaded on cpu (float32)" in lines[5]
    assert (
        "INPAINTBOT_CONTROLNET_BASE_MODEL is not set, so ControlNet jobs on it are refused" in lines[6]
    )
    lines.pop(6)
    assert "results are not checked, so the servers' NSFW policies have no effect" in lines[6]
    lines.pop(6)
    assert "masks from words: " in lines[6] and " load and run" in lines[6]
    lines.pop(6)
    assert "off: set INPAINTBOT_PUBLIC_URL" in lines[6]
    lines.pop(6)
    assert f"logged in as inpaintbot (application {fake_discord.app_id})" in lines[6]
    assert (
        f"client_id={fake_discord.app_id}&scope=bot+applications.commands&permissions=116800" in lines[7]
    )
    assert "Send Messages, Embed Links, Attach Files, Read Message History" in lines[7]
    assert FakeDiscord.token not in out


async def test_missing_token_fails_and_the_invite_needs_the_id_by_hand(config: BotConfig) -> None:
    results = details(await checks(config.model_copy(update={"discord_token": None})))
    assert results["token"].startswith("FAIL DISCORD_TOKEN is not set")
    assert "discord" not in results
    assert results["invite"].startswith("FAIL no application id without a good token")
    assert "client_id=APPLICATION_ID" in results["invite"]
    assert results["model"].startswith("ok ")  # the other checks still run


async def test_a_refused_token(config: BotConfig, fake_discord: FakeDiscord) -> None:
    wrong = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.not-the-real-secret"  # base64 of 123456789012345678
    results = details(await checks(config.model_copy(update={"discord_token": SecretStr(wrong)})))
    assert results["discord"] == (
        "FAIL Discord refused DISCORD_TOKEN; reset it on the application's Bot page and copy it again"
    )
    # The id is still in the token, so the operator gets a usable invite URL.
    assert "client_id=123456789012345678&" in results["invite"]
    assert "not-the-real-secret" not in str(results)


async def test_discord_unreachable(config: BotConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    unreachable = config.model_copy(update={"discord_api_base": "http://127.0.0.1:9/api/v10"})
    results = details(await checks(unreachable))
    assert results["discord"].startswith("FAIL cannot reach Discord: Cannot connect to host 127.0.0.1:9")


async def test_an_interactions_endpoint_url_steals_the_commands(
    config: BotConfig, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = payloads.application
    monkeypatch.setattr(
        payloads,
        "application",
        lambda *args: application(*args) | {"interactions_endpoint_url": "https://example.com/hook"},
    )
    results = details(await checks(config))
    assert results["discord"].startswith("FAIL the application has an Interactions Endpoint URL set")
    assert f"client_id={fake_discord.app_id}&" in results["invite"]


async def test_a_model_that_does_not_load(config: BotConfig, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    results = details(await checks(config.model_copy(update={"model": str(missing)})))
    assert results["model"] == f"FAIL The model file or folder {str(missing)!r} does not exist."


async def test_other_models_are_looked_up_without_loading(
    config: BotConfig, tiny_sd_regular_path: Path, tmp_path: Path
) -> None:
    found = details(await checks(config.model_copy(update={"models": [str(tiny_sd_regular_path)]})))
    assert found["models"] == "ok found the 1 other model(s) in INPAINTBOT_MODELS"
    typo = str(tmp_path / "typo.safetensors")
    missing = details(await checks(config.model_copy(update={"models": [typo]})))
    assert missing["models"] == f"FAIL The model file or folder {typo!r} does not exist."


async def test_controlnets_are_looked_up_without_loading(
    config: BotConfig, tiny_sd_regular_path: Path, tiny_controlnet: Path, tmp_path: Path
) -> None:
    regular = config.model_copy(update={"controlnet_base_model": str(tiny_sd_regular_path)})
    assert details(await checks(regular))["controlnets"] == (
        "ok found INPAINTBOT_CONTROLNET_TILE, INPAINTBOT_CONTROLNET_INPAINT; ControlNet jobs run on "
        f"{tiny_sd_regular_path}"
    )
    typo = str(tmp_path / "no-such-tile")
    sdxl = build_tiny_sdxl(tmp_path / "xl")
    broken = regular.model_copy(
        update={"controlnet_tile": typo, "controlnet_inpaint_sdxl": str(tiny_controlnet)}
    )
    assert details(await checks(broken))["controlnets"] == (
        f"FAIL INPAINTBOT_CONTROLNET_TILE: The ControlNet file or folder {typo!r} does not exist."
    )
    wrong_family = regular.model_copy(update={"controlnet_base_model": str(sdxl)})
    assert details(await checks(wrong_family))["controlnets"] == (
        "FAIL ControlNets do not work with inpainting (9-channel) checkpoints like "
        f"{config.model!r}, and this server's INPAINTBOT_CONTROLNET_BASE_MODEL ({str(sdxl)!r}) is "
        "SDXL, not SD 1.x. Choose a regular SD 1.x model."
    )


async def test_cuda_asked_for_but_absent(config: BotConfig) -> None:
    results = details(await checks(config.model_copy(update={"device": "cuda"})))
    assert results["device"].startswith("FAIL INPAINTBOT_DEVICE is cuda, but ")
    assert results["model"] == "FAIL not loaded: the device is not usable"


@pytest.mark.parametrize(
    ("free_gib", "expected"),
    [
        (20, "ok cuda: NVIDIA Test GPU, 20.0 of 24.0 GiB free"),
        (2, "warn cuda: NVIDIA Test GPU, 2.0 of 24.0 GiB free: SD1.x models need about 3-4 GB"),
    ],
)
async def test_free_gpu_memory_is_reported(
    config: BotConfig, monkeypatch: pytest.MonkeyPatch, free_gib: int, expected: str
) -> None:
    from bot.check.machine import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "NVIDIA Test GPU")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *args: (free_gib * 1024**3, 24 * 1024**3))
    check = check_device(config.model_copy(update={"device": "auto"}))
    assert f"{check.status} {check.detail}".startswith(expected)


async def test_database_revisions(config: BotConfig) -> None:
    await upgrade(config)
    current = details(await checks(config))["database"]
    assert current.startswith("ok sqlite+aiosqlite:///") and "is at the newest revision" in current
    path = config.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d'")
    newer = details(await checks(config))["database"]
    assert "is at revision f00d, which this version of inpaintbot does not know" in newer
    assert newer.startswith("FAIL ")


async def test_database_that_cannot_be_opened(config: BotConfig, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    url = f"sqlite+aiosqlite:///{tmp_path}/file/inpaintbot.sqlite3"
    result = details(await checks(config.model_copy(update={"database_url": url})))["database"]
    assert result.startswith(f"FAIL cannot open {url}: ")


async def test_database_password_is_not_shown(config: BotConfig) -> None:
    url = "postgresql+asyncpg://bot:hunter2@127.0.0.1:9/inpaintbot"
    result = details(await checks(config.model_copy(update={"database_url": url})))["database"]
    # Without asyncpg installed (as here) the reason is the missing driver; with it, the refused connection.
    prefix = "FAIL cannot open postgresql+asyncpg://bot:***@127.0.0.1:9/inpaintbot: "
    assert result.startswith(prefix) and len(result) > len(prefix)
    assert "hunter2" not in result


async def test_data_directory_that_cannot_be_written(config: BotConfig, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    unwritable = config.model_copy(update={"data_dir": tmp_path / "file" / "data"})
    assert details(await checks(unwritable))["data"].startswith(
        f"FAIL cannot write to {tmp_path / 'file' / 'data'}: "
    )


def test_bad_configuration_names_the_variable_and_hides_the_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token-value")
    monkeypatch.setenv("INPAINTBOT_QUEUE_MAX_PER_USER", "0")
    monkeypatch.setenv("INPAINTBOT_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as exit_status:
        main(["check"])
    assert exit_status.value.code == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "FAIL config: INPAINTBOT_QUEUE_MAX_PER_USER: Input should be greater than or equal to 1; "
        "INPAINTBOT_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"
    ]
    assert "secret-token-value" not in out


async def test_the_safety_checker_is_loaded_and_run(config: BotConfig, tmp_path: Path) -> None:
    checker = build_tiny_checker(tmp_path / "checker")
    results = details(await checks(config.model_copy(update={"safety_checker": str(checker)})))
    assert results["safety"] == f"ok the safety checker {checker} loads and runs"
    missing = tmp_path / "no-checker"
    results = details(await checks(config.model_copy(update={"safety_checker": str(missing)})))
    assert results["safety"].startswith(
        f"FAIL INPAINTBOT_SAFETY_CHECKER={missing} could not be loaded ("
    )
    assert results["safety"].endswith("or set INPAINTBOT_SAFETY_CHECKER=none to turn checking off.")
    assert "\n" not in results["safety"]


async def test_the_mask_models_are_loaded_and_run(config: BotConfig, tmp_path: Path) -> None:
    missing = tmp_path / "no-detector"
    results = details(await checks(config.model_copy(update={"mask_detector": str(missing)})))
    assert results["masks"].startswith(
        f"FAIL The models for masks from words could not be loaded: INPAINTBOT_MASK_DETECTOR={missing}"
    )
    assert results["masks"].endswith("or set either to none to turn mask_prompt off.")
    assert "\n" not in results["masks"]
    results = details(await checks(config.model_copy(update={"mask_segmenter": None})))
    assert (
        results["masks"]
        == "warn INPAINTBOT_MASK_DETECTOR or _SEGMENTER is none: mask_prompt is turned off"
    )


async def check_painter_at(config: BotConfig, public_url: str, port: int) -> Check:
    return await check_painter(config.model_copy(update={"public_url": public_url, "web_port": port}))


async def test_the_painter_answers_at_its_public_address(bot_config: BotConfig) -> None:
    port = free_port()
    found = await check_painter_at(bot_config, f"http://127.0.0.1:{port}", port)
    assert (found.status, found.name) == ("ok", "painter")
    assert f"reaches the painter served on 127.0.0.1:{port}" in found.detail


async def test_a_public_address_that_does_not_lead_to_the_painter(bot_config: BotConfig) -> None:
    port, elsewhere = free_port(), free_port()
    found = await check_painter_at(bot_config, f"http://127.0.0.1:{elsewhere}", port)
    assert (
        found.status == "FAIL"
        and f"nothing answers at http://127.0.0.1:{elsewhere}/health" in found.detail
    )
    assert f"point your reverse proxy or tunnel at 127.0.0.1:{port}" in found.detail

    other = web.Application()  # another program answers there
    other.router.add_get("/health", lambda request: web.Response(text="hello"))
    runner = web.AppRunner(other)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", elsewhere).start()
    try:
        found = await check_painter_at(bot_config, f"http://127.0.0.1:{elsewhere}", port)
    finally:
        await runner.cleanup()
    assert found.status == "FAIL" and "answered 200 but not as the painter" in found.detail


async def test_gpu_workers_connected_through_redis_are_listed(
    bot_config: BotConfig, redis_url: str
) -> None:
    config = bot_config.model_copy(update={"redis_url": SecretStr(redis_url), "local_worker": False})
    alone = await check_workers(config)
    assert (alone.status, alone.detail) == ("warn", f"Redis at {redis_url}; no GPU worker connected")

    keys = Keys(config.redis_prefix)
    client = Redis.from_url(redis_url)
    try:
        await client.set(keys.worker("anna"), WorkerInfo("anna", 2, 0, ("sd15",), "0.1.0", 0.0).encode())
        await client.sadd(keys.workers, "anna", "gone")  # "gone": its announcement expired
        listed = await check_workers(config.model_copy(update={"local_worker": True}))
        assert await client.smembers(keys.workers) == {b"anna"}
    finally:
        await client.aclose()
    assert listed.status == "ok"
    assert listed.detail.endswith("connected: anna (2 slots, 0.1.0, models: sd15) and this bot's GPU")


async def test_an_unreachable_redis_fails_without_showing_its_password(bot_config: BotConfig) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = await check_workers(bot_config.model_copy(update={"redis_url": SecretStr(url)}))
    assert result.status == "FAIL"
    assert result.detail.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{url.split(':')[3]}")
    assert "hunter2" not in result.detail
