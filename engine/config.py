"""Operator configuration of the engine, read from the environment and ``.env``.

Every variable is documented in the README's configuration table; the bot's own configuration extends
this class so one object holds everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


class EngineConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INPAINTBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    model: str = Field(
        DEFAULT_MODEL,
        description="Default model: a Hub id, a local diffusers folder or a single .safetensors file.",
    )
    device: Literal["auto", "cuda", "cpu"] = "auto"
    data_dir: Path = Path("./data")
    max_pixels: int = Field(40_000_000, ge=1, description="Largest input image, in pixels.")
    single_file_config: str | None = Field(
        None,
        description=(
            "Hub id or local diffusers folder with the configs for single-file checkpoints; by default "
            "diffusers infers them from the checkpoint and fetches them from the Hub once."
        ),
    )
    max_loaded_models: int = Field(2, ge=1, le=16, description="Pipelines kept resident at once.")
    face_detector_model: Path | None = Field(
        None, description="Optional YuNet ONNX file for cv2.FaceDetectorYN (better than Haar)."
    )
