"""Estimated run time of a job from what similar jobs took."""

from __future__ import annotations

SMOOTHING = 0.3  # weight of the newest observation: follows a warming GPU without jumping on outliers


class EtaEstimator:
    """A running average of seconds per step per image, for each model and processing size.

    A size never seen for a model is estimated from that model's other sizes, scaled by pixel count.
    """

    def __init__(self) -> None:
        self._rates: dict[tuple[str, tuple[int, int]], float] = {}

    def observe(
        self, model: str, size: tuple[int, int], *, steps: int, images: int, seconds: float
    ) -> None:
        if steps <= 0 or images <= 0:
            return
        rate = seconds / (steps * images)
        key = (model, size)
        old = self._rates.get(key)
        self._rates[key] = rate if old is None else old + SMOOTHING * (rate - old)

    def estimate(self, model: str, size: tuple[int, int], *, steps: int, images: int) -> float | None:
        rate = self._rates.get((model, size))
        if rate is None:
            per_pixel = [r / (w * h) for (m, (w, h)), r in self._rates.items() if m == model]
            if not per_pixel:
                return None
            rate = sum(per_pixel) / len(per_pixel) * size[0] * size[1]
        return rate * max(steps, 1) * images
