"""What operators rely on outside the bot's features: the env file, the Docker files, the migrations a
wheel installs, the health check and the log."""

import json
import logging
import re
import shlex
import time
import tomllib
from glob import glob
from pathlib import Path

import pytest
import yaml

from bot import health
from bot.cli import main
from bot.config import BotConfig
from bot.logs import JobLog, RedactingFormatter, configure_logging
from bot.queue.events import (
    CancelledEvent,
    DoneEvent,
    FailedEvent,
    ProgressEvent,
    QueuedEvent,
    StartedEvent,
)
from bot.store import migrate
from engine.settings import InpaintSettings

REPO = Path(__file__).resolve().parents[2]
ENV_LINE = re.compile(r"^# ([A-Z][A-Z0-9_]*)=(.*)$")


# -- .env.example --------------------------------------------------------------------------------------


def env_names(name: str) -> set[str]:
    """The variable names a BotConfig field is read from."""
    choices = getattr(BotConfig.model_fields[name].validation_alias, "choices", [])
    return {f"INPAINTBOT_{name.upper()}", *(choice for choice in choices if choice.isupper())}


def env_example() -> dict[str, tuple[str, str]]:
    """Variable -> (value, the comment paragraph it is in)."""
    entries: dict[str, tuple[str, str]] = {}
    paragraph: list[str] = []
    for line in (REPO / ".env.example").read_text().splitlines():
        if not line.strip():
            paragraph = []
            continue
        paragraph.append(line)
        if match := ENV_LINE.match(line):
            entries[match[1]] = (match[2], "\n".join(paragraph))
    return entries


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    listed = set(env_example())
    missing = [name for name in BotConfig.model_fields if not env_names(name) & listed]
    assert missing == [], f".env.example lacks {missing}"
    known = set().union(*(env_names(name) for name in BotConfig.model_fields))
    stale = {name for name in listed if name.startswith("INPAINTBOT_")} - known
    assert stale == set(), f".env.example names settings that do not exist: {stale}"


def test_env_example_shows_each_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Uncommenting a line changes nothing; settings unset by default say so (their line is an example)."""
    for name in (*BotConfig.model_fields, "discord_token"):
        for variable in env_names(name):
            monkeypatch.delenv(variable, raising=False)
    defaults = BotConfig(_env_file=None)
    entries = env_example()
    for name in BotConfig.model_fields:
        (variable,) = env_names(name) & set(entries)
        value, paragraph = entries[variable]
        if getattr(defaults, name) in (None, "", []) or name == "database_url":
            assert "unset by default" in paragraph.lower(), variable
            continue
        monkeypatch.setenv(variable, value)
        assert getattr(BotConfig(_env_file=None), name) == getattr(defaults, name), variable
        monkeypatch.delenv(variable)


# -- Docker ---------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments))
            pending = ""
    return instructions


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    pairs = [shlex.split(arguments) for keyword, arguments in instructions if keyword == "ENV"]
    return dict(pair.split("=", 1) for words in pairs for pair in words)


def test_dockerfile_runs_the_bot_unprivileged_with_its_state_on_volumes() -> None:
    instructions = dockerfile()
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = env_of(instructions)
    volumes = {
        path for keyword, args in instructions if keyword == "VOLUME" for path in json.loads(args)
    }
    assert {env["INPAINTBOT_DATA_DIR"], env["HF_HOME"]} <= volumes
    (healthcheck,) = [arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["inpaintbot", "health"]')
    assert ("STOPSIGNAL", "SIGINT") in instructions  # the bot's graceful shutdown path
    copied = {args.split()[0] for keyword, args in instructions if keyword == "COPY"}
    assert "migrations" in copied  # pyproject's data-files take them into the wheel


def test_compose_reserves_a_gpu_and_keeps_the_image_volumes() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["inpaintbot"]
    assert "profiles" not in service, "`docker compose up` runs the bot alone, as before"
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert service["env_file"] == ".env" and service["restart"] == "unless-stopped"
    mounts = dict(volume.split(":")[::-1] for volume in service["volumes"])
    image_volumes = {
        path for keyword, args in dockerfile() if keyword == "VOLUME" for path in json.loads(args)
    }
    assert set(mounts) == image_volumes and set(mounts.values()) <= set(compose["volumes"])
    grace = int(service["stop_grace_period"].removesuffix("s"))
    assert grace > BotConfig.model_fields["shutdown_timeout"].default


def test_the_painter_listens_in_the_container_and_is_published_to_the_host_only() -> None:
    env = env_of(dockerfile())
    assert env["INPAINTBOT_WEB_HOST"] == "0.0.0.0"
    port = BotConfig.model_fields["web_port"].default
    assert ("EXPOSE", str(port)) in dockerfile()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["inpaintbot"]
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_compose_has_a_redis_with_a_password_and_a_gpu_worker_behind_profiles() -> None:
    """More GPUs (README): neither starts unless asked for, so the single-process mode stays as it was."""
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    redis, worker = services["redis"], services["worker"]
    assert redis["profiles"] == ["redis"] and redis["image"].startswith("redis:7")
    assert "--requirepass" in redis["command"] and "ports" not in redis  # not published unencrypted
    assert worker["profiles"] == ["worker"] and worker["command"] == ["worker"]
    assert worker["image"] == services["inpaintbot"]["image"] and worker["env_file"] == ".env"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_dockerignore_keeps_secrets_and_state_out_of_the_image() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", "data", ".git"} <= set(ignored)


# -- migrations in a wheel ------------------------------------------------------------------------------


def test_the_wheel_carries_every_migration() -> None:
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    packaged = {
        Path(path)
        for patterns in data_files.values()
        for p in patterns
        for path in glob(p, root_dir=REPO)
    }
    scripts = {
        path.relative_to(REPO)
        for path in (REPO / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert scripts == packaged
    for target, patterns in data_files.items():
        for pattern in patterns:
            assert Path(target) == migrate.INSTALLED_MIGRATIONS / Path(pattern).parent.relative_to(
                "migrations"
            )


def test_installed_migrations_are_found_without_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrate, "CHECKOUT_MIGRATIONS", tmp_path / "site-packages" / "migrations")
    monkeypatch.setattr(migrate.sysconfig, "get_path", lambda name, scheme: str(tmp_path / scheme))
    with pytest.raises(FileNotFoundError, match="the database migrations are not installed; looked in"):
        migrate.migrations_dir()
    installed = tmp_path / migrate.sysconfig.get_default_scheme() / migrate.INSTALLED_MIGRATIONS
    installed.mkdir(parents=True)
    (installed / "env.py").touch()
    assert migrate.migrations_dir() == installed


# -- health ---------------------------------------------------------------------------------------------


def test_heartbeat_freshness(tmp_path: Path) -> None:
    path = health.heartbeat_path(tmp_path)
    assert "no heartbeat" in (health.problem(path) or "")
    health.beat(path, now=1000.0)
    assert health.problem(path, now=1000.0 + health.STALE_AFTER) is None
    assert health.problem(path, now=1001.0 + health.STALE_AFTER) == (
        "the last heartbeat is 91 s old: the bot is stuck or not connected to Discord"
    )
    path.write_text("garbage")
    assert health.problem(path) == f"the heartbeat {path} holds 'garbage', not a time"
    health.clear(path)
    health.clear(path)  # twice is fine: close() may run twice
    assert not path.exists()


def test_health_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INPAINTBOT_DATA_DIR", str(tmp_path))

    def health_status() -> int | str | None:
        with pytest.raises(SystemExit) as exit_status:
            main(["health"])
        return exit_status.value.code

    assert health_status() == 1
    assert capsys.readouterr().err.startswith("unhealthy: no heartbeat at ")
    health.beat(health.heartbeat_path(tmp_path))
    assert health_status() == 0
    assert capsys.readouterr().out == "healthy\n"
    health.beat(health.heartbeat_path(tmp_path), now=time.time() - 2 * health.STALE_AFTER)
    assert health_status() == 1


# -- logs -----------------------------------------------------------------------------------------------


def test_job_events_make_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([0.0, 0.5, 2.0, 2.5, 9.0, 20.0, 21.0, 22.0]).__next__
    job_log = JobLog(clock=clock)
    caplog.set_level(logging.INFO, logger="bot.jobs")
    settings = InpaintSettings.parse(seed=1)
    for event in [
        QueuedEvent(7, 42, position=2, eta=None),
        QueuedEvent(7, 42, position=1, eta=12.0),  # a new position: not logged again
        StartedEvent(7, 42, eta=6.5),
        ProgressEvent(7, 42, step=1, total=10),  # too chatty to log
        DoneEvent(
            7,
            42,
            images=(),
            settings=settings,
            model="some/model",
            mask_source=None,
            seconds=6.25,
            timings={"prepare": 0.1, "denoise": 6.0},
        ),
        FailedEvent(8, 43, message="The GPU ran out of memory."),
        QueuedEvent(9, 44, position=1, eta=None),
        CancelledEvent(9, 44),
    ]:
        job_log.record(event)
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("INFO", "job=7 user=42 event=queued position=2 eta=?"),
        ("INFO", "job=7 user=42 event=started waited=2.00s eta=6.50s"),
        (
            "INFO",
            "job=7 user=42 event=done run=6.25s total=9.00s images=0 prepare=0.10s denoise=6.00s "
            "model=some/model",
        ),
        ("WARNING", "job=8 user=43 event=failed total=? reason='The GPU ran out of memory.'"),
        ("INFO", "job=9 user=44 event=queued position=1 eta=?"),
        ("INFO", "job=9 user=44 event=cancelled total=1.00s"),
    ]


def test_run_logging_has_timestamps_the_level_and_no_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    configure_logging("WARNING", ["tok.en.secret"])
    logging.getLogger("discord.http").info("hidden: below the level")
    try:
        raise RuntimeError("request with tok.en.secret failed")
    except RuntimeError:
        logging.getLogger("discord.http").exception("Bot tok.en.secret was refused")
    err = capsys.readouterr().err
    assert "tok.en.secret" not in err and "hidden" not in err
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR discord.http: Bot \[redacted\] was", err
    )
    assert "RuntimeError: request with [redacted] failed" in err
    assert isinstance(root.handlers[0].formatter, RedactingFormatter)


def test_painter_links_are_redacted_from_every_log_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """discord.py logs the payloads it sends at DEBUG: the painter's link button among them."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    configure_logging("DEBUG")
    token = f"{'0a' * 16}.1800000900.{'S' * 42}-"
    payload = f'{{"components": [{{"url": "https://paint.example.org/paint/{token}"}}]}}'
    logging.getLogger("discord.http").debug("POST /webhooks with %s has returned 200", payload)
    err = capsys.readouterr().err
    assert token not in err and "paint.example.org/paint/[redacted]" in err


# -- inpaintbot run ---------------------------------------------------------------------------------------


def run_error(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_status:
        main(["run"])
    assert exit_status.value.code == 2
    return capsys.readouterr().err


def test_run_with_an_empty_token_explains_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    (tmp_path / ".env").write_text("DISCORD_TOKEN=\n")  # copied from .env.example, not filled in
    assert run_error(capsys).startswith("error: DISCORD_TOKEN is not set.")


def test_run_with_a_painter_key_file_gone_empty_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "not-checked-before-the-painter-starts")
    monkeypatch.setenv("INPAINTBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INPAINTBOT_PUBLIC_URL", "https://paint.example.org")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "painter-secret").write_text("")  # a disk that filled up, say
    err = run_error(capsys)
    assert err.splitlines()[-1].startswith("error: ") and "painter-secret holds no key" in err
    assert "Traceback" not in err


def test_run_with_a_refused_token_or_a_bad_setting_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import discord

    async def refused(config: BotConfig) -> None:
        raise discord.LoginFailure("Improper token has been passed.")

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bot.runner.run_bot", refused)
    monkeypatch.setenv("DISCORD_TOKEN", "reset-long-ago")
    assert run_error(capsys) == (
        "error: Discord refused DISCORD_TOKEN; reset it on the application's Bot page and copy it again\n"
    )
    monkeypatch.setenv("INPAINTBOT_JOB_TIMEOUT", "soon")
    assert run_error(capsys) == (
        "error: bad configuration: INPAINTBOT_JOB_TIMEOUT: Input should be a valid number, "
        "unable to parse string as a number\n"
    )


def test_the_wheel_carries_no_test_helpers() -> None:
    """Tiny-model builders and fakes live under tests/, which the wheel leaves out."""
    from setuptools import find_packages

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    shipped = find_packages(str(REPO), include=include["find"]["include"])
    assert {"bot", "engine"} <= set(shipped)
    assert not [name for name in shipped if name.split(".")[0] not in {"bot", "engine"}]
    for package in ("bot", "engine"):
        for module in (REPO / package).rglob("*.py"):
            assert not re.search(r"^\s*(from|import) tests\b", module.read_text(), re.M), module
