"""How much memory the full-size VAE takes to decode (and encode) one picture, by size, with and
without tiling: what ``engine.latents.TILE_ABOVE_PIXELS`` rests on.

Each measure runs in a fresh process on the CPU (float32): the peak resident memory during the call
minus the memory before it. The VAE's activations grow with the pixels, so the CPU figures at small
sizes give the rate per megapixel; a float16 VAE on a GPU takes about half (its upcast SDXL VAE the
same as here).

    python -m bench.vae_memory [--sizes 128 256 384] [--tiled 384]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from diffusers import AutoencoderKL

from bench.gpu import SDXL_VAE


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure(size: int, work: str, tiled: bool) -> dict[str, float]:
    """In this process: one call's peak memory above what was resident before it."""
    torch.manual_seed(0)
    vae = AutoencoderKL(**SDXL_VAE)
    if tiled:
        vae.enable_tiling()
        # Tiles of half the side, as SDXL's 1024 px tiles are for a 2048 px picture.
        vae.tile_sample_min_size = size // 2
        vae.tile_latent_min_size = size // 16
    with torch.inference_mode():
        inputs = (
            torch.randn(1, 3, size, size)
            if work == "encode"
            else torch.randn(1, 4, size // 8, size // 8)
        )
        before = _rss_mib()
        started = time.perf_counter()
        if work == "encode":
            vae.encode(inputs)
        else:
            vae.decode(inputs)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "peak_mib": peak - before, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384])
    parser.add_argument("--tiled", type=int, nargs="*", default=[384])
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "WORK", "TILED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        size, work, tiled = args.one
        print(json.dumps(measure(int(size), work, tiled == "1")))
        return
    runs = [(size, work, "0") for size in args.sizes for work in ("decode", "encode")]
    runs += [(size, "decode", "1") for size in args.tiled]
    for size, work, tiled in runs:
        out = subprocess.run(
            [sys.executable, "-m", "bench.vae_memory", "--one", str(size), work, tiled],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        figure = json.loads(out.strip().splitlines()[-1])
        megapixels = size * size / 1e6
        print(
            f"{work:6} {size:5d} px{' tiled' if tiled == '1' else '      '}: "
            f"{figure['peak_mib']:7.0f} MiB ({figure['peak_mib'] / megapixels:6.0f} MiB/MP), "
            f"{figure['seconds']:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
