"""Peak memory of a call, as the operating system sees it.

``tracemalloc`` sees only Python's and NumPy's allocations, not Pillow's image buffers (masks and
pictures live there), so this reads the process's peak resident set (Linux ``VmHWM``), after resetting
it. Other threads of the test process allocate little meanwhile; the figure is an upper bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MIB = 1024**2
_STATUS = Path("/proc/self/status")


def peak_growth(call: Callable[[], T]) -> tuple[T, int]:
    """``call()``'s result and how far the resident set grew above its size before the call (bytes)."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status_kib("VmRSS")
    result = call()
    return result, (_status_kib("VmHWM") - before) * 1024


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"{_STATUS} has no {field}")
    return int(match.group(1))
