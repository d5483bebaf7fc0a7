"""The safety checker's verdicts on a batch's pictures (each whole and where it was repainted, see
``engine.safety.screen``), and a batch run with them. Runs in the GPU thread, beside the engine."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from engine.job import InpaintResult, ProgressCallback
from engine.safety import SafetyChecker, screen

log = logging.getLogger(__name__)

# A job's result with the safety checker's verdict on each of its pictures (None: not checked).
Checked = tuple[InpaintResult, list[bool | None]]


class Runs(Protocol):
    """The engine's GPU stage (``engine.engine.Engine.run``)."""

    def run(
        self,
        jobs: Sequence[Any],
        *,
        on_progress: Sequence[ProgressCallback | None] | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
    ) -> list[InpaintResult]: ...


def load_checker(safety: SafetyChecker | None) -> None:
    """Load the checker with the model, not on the first result. One that cannot load stops the
    start (``DiffusersSafetyChecker`` says which setting to fix): running on would count every
    result as flagged, which servers with the default policy would never see."""
    if safety is not None:
        safety.load()


def verdicts(safety: SafetyChecker | None, results: list[InpaintResult]) -> list[list[bool | None]]:
    """The verdict on every output, per job (``None``: not checked). A picture the checker fails on
    counts as flagged: a server that hides flagged pictures would not want an unchecked one shown
    openly (with the policy off it is posted all the same)."""
    pictures = [(output.image, result.repainted) for result in results for output in result.images]
    flags: list[bool | None] = [None] * len(pictures)
    if safety is not None and pictures:
        try:
            flags = list(screen(safety, pictures))
        except Exception:
            log.exception("the safety checker failed; %d pictures count as flagged", len(pictures))
            flags = [True] * len(pictures)
    each = iter(flags)
    return [list(itertools.islice(each, len(result.images))) for result in results]


def run_and_screen(
    engine: Runs,
    safety: SafetyChecker | None,
    prepared: Sequence[Any],
    *,
    on_progress: Sequence[ProgressCallback | None],
    cancel: threading.Event,
    previews: bool,
) -> list[Checked]:
    """Run a batch and screen its pictures, in the GPU thread: what the local queue and a GPU worker
    both do with a batch."""
    results = engine.run(prepared, on_progress=on_progress, cancel=cancel, previews=previews)
    return list(zip(results, verdicts(safety, results), strict=True))
