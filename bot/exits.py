"""How the ``inpaintbot`` commands end: a user error is one ``error:`` line and status 2."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)
