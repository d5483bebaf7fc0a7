"""The safety checker's verdicts on a batch's pictures (each whole and where it was repainted, see
``engine.safety.screen``), in two steps: ``views`` is picture work (the results' composites and the
checker's small copies), done off the GPU thread; ``verdicts`` runs the checker, in the GPU thread."""

from __future__ import annotations

import itertools
import logging

from PIL import Image

from engine.job import InpaintResult
from engine.safety import SafetyChecker, judge
from engine.safety import views as safety_views

log = logging.getLogger(__name__)


def load_checker(safety: SafetyChecker | None) -> None:
    """Load the checker with the model, not on the first result. One that cannot load stops the
    start (``DiffusersSafetyChecker`` says which setting to fix): running on would count every
    result as flagged, which servers with the default policy would never see."""
    if safety is not None:
        safety.load()


Views = list[list[list[Image.Image]]]  # per job, per picture: what the checker is shown


def views(safety: SafetyChecker | None, results: list[InpaintResult]) -> Views:
    """What the checker is shown of every output, per job; nothing when checking is off (the
    pictures are then composited by whoever encodes them)."""
    if safety is None:
        return [[] for _ in results]
    return [
        safety_views([(output.image, result.repainted) for output in result.images])
        for result in results
    ]


def verdicts(
    safety: SafetyChecker | None, results: list[InpaintResult], shown: Views
) -> list[list[bool | None]]:
    """The verdict on every output, per job (``None``: not checked), from its ``views``. A picture the
    checker fails on counts as flagged: a server that hides flagged pictures would not want an
    unchecked one shown openly (with the policy off it is posted all the same)."""
    pictures = [each for job in shown for each in job]
    flags: list[bool | None] = [None] * sum(len(result.images) for result in results)
    if safety is not None and pictures:
        try:
            flags = list(judge(safety, pictures))
        except Exception:
            log.exception("the safety checker failed; %d pictures count as flagged", len(flags))
            flags = [True] * len(flags)
    each = iter(flags)
    return [list(itertools.islice(each, len(result.images))) for result in results]
