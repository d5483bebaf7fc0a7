"""The heartbeat behind ``inpaintbot health`` (the Docker health check): fresh only while the bot is ready.

The running bot rewrites ``<data dir>/heartbeat`` every ``INTERVAL`` seconds while it is connected to
Discord with its model loaded and its queue running, and removes it when it stops. A bot that hangs,
stays disconnected or has stopped lets the file go stale, so a check from another process (the
container's health check) tells a working bot from a merely running process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HEARTBEAT_FILE = "heartbeat"
INTERVAL = 30.0  # seconds between heartbeats
STALE_AFTER = 3 * INTERVAL  # a few missed beats (a short reconnect) are still healthy


def heartbeat_path(data_dir: Path) -> Path:
    return data_dir / HEARTBEAT_FILE


def beat(path: Path, now: float | None = None) -> None:
    """Record that the bot is ready now; written aside and renamed, so a reader never sees half a file."""
    stamp = time.time() if now is None else now
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(f"{stamp:.3f}\n", encoding="ascii")
    os.replace(partial, path)


def clear(path: Path) -> None:
    """The bot stops: unhealthy at once, not only once the last beat has gone stale."""
    path.unlink(missing_ok=True)


def problem(path: Path, now: float | None = None, stale_after: float = STALE_AFTER) -> str | None:
    """Why the bot is not healthy, or ``None`` when its last heartbeat is recent."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return f"no heartbeat at {path}: the bot is starting, stopped, or not connected to Discord"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read the heartbeat {path}: {exc}"
    try:
        stamp = float(text)
    except ValueError:
        return f"the heartbeat {path} holds {text.strip()[:40]!r}, not a time"
    age = (time.time() if now is None else now) - stamp
    if age > stale_after:
        return f"the last heartbeat is {age:.0f} s old: the bot is stuck or not connected to Discord"
    return None
