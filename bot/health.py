"""The heartbeat behind ``inpaintbot health`` (the Docker health check): fresh only while the bot is ready.

The running bot rewrites ``<data dir>/heartbeat`` every ``INTERVAL`` seconds while it is connected to
Discord with its model loaded and its queue running, and removes it when it stops. A bot that hangs,
stays disconnected or has stopped lets the file go stale, so a check from another process (the
container's health check) tells a working bot from a merely running process. A bot whose GPU thread
hangs on a job (which no thread can end) writes why instead: unhealthy at once, with the reason.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HEARTBEAT_FILE = "heartbeat"
UNHEALTHY = "unhealthy: "
INTERVAL = 30.0  # seconds between heartbeats
STALE_AFTER = 3 * INTERVAL  # a few missed beats (a short reconnect) are still healthy


def heartbeat_path(data_dir: Path) -> Path:
    return data_dir / HEARTBEAT_FILE


def beat(path: Path, now: float | None = None) -> None:
    """Record that the bot is ready now."""
    _write(path, f"{time.time() if now is None else now:.3f}")


def unhealthy(path: Path, reason: str) -> None:
    """The bot runs but cannot do its work: ``problem`` reports ``reason`` until the next ``beat``."""
    _write(path, UNHEALTHY + reason)


def _write(path: Path, text: str) -> None:
    """Written aside and renamed, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(f"{text}\n", encoding="utf-8")
    os.replace(partial, path)


def clear(path: Path) -> None:
    """The bot stops: unhealthy at once, not only once the last beat has gone stale."""
    path.unlink(missing_ok=True)


def problem(path: Path, now: float | None = None, stale_after: float = STALE_AFTER) -> str | None:
    """Why the bot is not healthy, or ``None`` when its last heartbeat is recent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"no heartbeat at {path}: the bot is starting, stopped, or not connected to Discord"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read the heartbeat {path}: {exc}"
    if text.startswith(UNHEALTHY):
        return text.removeprefix(UNHEALTHY).strip()
    try:
        stamp = float(text)
    except ValueError:
        return f"the heartbeat {path} holds {text.strip()[:40]!r}, not a time"
    age = (time.time() if now is None else now) - stamp
    if age > stale_after:
        return f"the last heartbeat is {age:.0f} s old: the bot is stuck or not connected to Discord"
    return None
