"""The safety checker's verdicts on a batch's pictures (each whole and where it was repainted, see
``engine.safety.screen``). Runs in the GPU thread, beside the engine."""

from __future__ import annotations

import itertools
import logging

from engine.job import InpaintResult
from engine.safety import SafetyChecker, screen

log = logging.getLogger(__name__)


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
