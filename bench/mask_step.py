"""How long the mask step of a ``mask_prompt`` job takes: Grounding DINO's boxes, then SAM 2's masks.

By default it builds the tiny random-weight models of the tests (``tests.support.tiny_mask_models``),
so it runs anywhere offline; their figures only say what the code around the models costs. With
``--detector``/``--segmenter`` it times real models, e.g. the defaults at 1024 px on a GPU:

    python -m bench.mask_step [--size 1024] [--runs 5] [--device cpu]
    python -m bench.mask_step --detector IDEA-Research/grounding-dino-tiny \\
        --segmenter facebook/sam2.1-hiera-tiny --size 1024 --device cuda

Real ids must be downloaded first (``HF_HUB_OFFLINE=1`` is the default here; run once with
``HF_HUB_OFFLINE=0``, or use local folders). The first call, which loads the models, is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from engine.errors import MaskError, ModelLoadError
from engine.masks.words import WordModels, find_matches
from engine.models import resolve_device
from tests.pictures import photo
from tests.support.tiny_mask_models import build_tiny_grounding_dino, build_tiny_sam2

PROMPT = "person | not face"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", help="Grounding DINO id or folder (default: the tiny test model)")
    parser.add_argument("--segmenter", help="SAM 2 id or folder (default: the tiny test model)")
    parser.add_argument("--size", type=int, default=1024, help="long side of the picture, px")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        detector = args.detector or str(build_tiny_grounding_dino(Path(tmp) / "dino"))
        segmenter = args.segmenter or str(build_tiny_sam2(Path(tmp) / "sam2"))
        models = WordModels(detector, segmenter, resolve_device(args.device))
        picture = photo(args.size, args.size * 3 // 4)
        started = time.perf_counter()
        try:
            models.load()
        except ModelLoadError as exc:
            raise SystemExit(
                f"{exc}\n(real model ids must be downloaded first: HF_HUB_OFFLINE=0)"
            ) from None
        loaded = time.perf_counter() - started
        detect, segment, whole = [], [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            found = models.detect(picture, "person")
            detect.append(time.perf_counter() - started)
            started = time.perf_counter()
            models.segment(picture, found[:1])
            segment.append(time.perf_counter() - started)
            started = time.perf_counter()
            # The tiny models may find nothing, or only the face: the search is what is timed.
            with contextlib.suppress(MaskError):
                find_matches(models, picture, PROMPT)
            whole.append(time.perf_counter() - started)
    print(
        f"models: {detector} + {segmenter} on {models.device}, picture {picture.width}x{picture.height}"
    )
    print(f"load: {loaded:.2f} s")
    print(f"detect one phrase: median {statistics.median(detect) * 1000:.0f} ms")
    print(f"segment one box: median {statistics.median(segment) * 1000:.0f} ms")
    print(
        f"mask step of {PROMPT!r} (two phrases, their boxes): median {statistics.median(whole) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
