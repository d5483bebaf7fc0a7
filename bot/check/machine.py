"""Checks of what the bot runs on: where it keeps its data (the data folder, the database) and the
device it computes on."""

from __future__ import annotations

import tempfile

from bot.check.result import Check
from bot.config import BotConfig

GIB = 1024**3
# Below this much free GPU memory even an SD1.x model in fp16 is tight (README: VRAM guidance).
LOW_VRAM_BYTES = 4 * GIB


def check_data_dir(config: BotConfig) -> Check:
    """The bot writes its database and pictures here; in Docker a volume owned by another user is the
    usual mistake."""
    for folder in (config.data_dir, config.images_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            return Check("FAIL", "data", f"cannot write to {folder.resolve()}: {exc.strerror or exc}")
    return Check("ok", "data", f"{config.data_dir.resolve()} is writable")


async def check_database(config: BotConfig) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store.database import create_engine
    from bot.store.migrate import alembic_config

    shown = make_url(config.database_url).render_as_string(hide_password=True)
    try:
        scripts = ScriptDirectory.from_config(alembic_config(config.database_url))
    except FileNotFoundError as exc:
        return Check("FAIL", "database", str(exc))
    head = scripts.get_current_head()
    engine = None
    try:
        engine = create_engine(config.database_url)
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    except ImportError as exc:
        return Check("FAIL", "database", f"cannot open {shown}: {exc}; install the database's driver")
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return Check("FAIL", "database", f"cannot open {shown}: {reason}")
    finally:
        if engine is not None:
            await engine.dispose()
    if current == head:
        return Check("ok", "database", f"{shown} is at the newest revision {head}")
    if current is None:
        return Check("ok", "database", f"{shown} is new; the bot creates its tables when it starts")
    try:
        scripts.get_revision(current)
    except CommandError:
        return Check(
            "FAIL",
            "database",
            f"{shown} is at revision {current}, which this version of inpaintbot does not know: it was "
            "written by a newer version. Run that version, or restore the backup taken before the upgrade.",
        )
    return Check(
        "ok",
        "database",
        f"{shown} is at revision {current}; the bot migrates it to {head} when it starts "
        "(or run `inpaintbot db upgrade`)",
    )


def check_device(config: BotConfig) -> Check:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        free, total = torch.cuda.mem_get_info()
        detail = f"cuda: {name}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"
        if config.device == "cpu":
            return Check("warn", "device", f"cpu, as INPAINTBOT_DEVICE says, although there is {detail}")
        if free < LOW_VRAM_BYTES:
            return Check(
                "warn", "device", f"{detail}: SD1.x models need about 3-4 GB, SDXL about 8-10 GB"
            )
        return Check("ok", "device", detail)
    if torch.version.cuda is None:
        why = f"this PyTorch ({torch.__version__}) is a CPU-only build"
    else:
        why = (
            f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU: is the NVIDIA driver "
            "installed, and in Docker, does the container have a GPU (compose's device reservation)?"
        )
    if config.device == "cuda":
        return Check("FAIL", "device", f"INPAINTBOT_DEVICE is cuda, but {why}")
    if config.device == "cpu":
        return Check("warn", "device", "cpu, as INPAINTBOT_DEVICE says: each job takes minutes")
    return Check("warn", "device", f"no CUDA GPU, so the CPU (each job takes minutes): {why}")
