"""Operator configuration of the engine, read from the environment and ``.env``.

Every variable is documented in the README's configuration table; the bot's own configuration extends
this class so one object holds everything.

ControlNets (``INPAINTBOT_CONTROLNET_*``) default to lllyasviel's SD 1.5 v1.1 Tile and Inpaint models.
For SDXL bases, Tile defaults to xinsir's SDXL tile ControlNet, the one most used with diffusers; no
public SDXL ControlNet is trained on ``inpaint_only``'s control image (masked pixels at -1), so the SDXL
Inpaint one has no default and such jobs are refused until the operator names one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"
DEFAULT_CONTROLNET_TILE = "lllyasviel/control_v11f1e_sd15_tile"
DEFAULT_CONTROLNET_INPAINT = "lllyasviel/control_v11p_sd15_inpaint"
DEFAULT_CONTROLNET_TILE_SDXL = "xinsir/controlnet-tile-sdxl-1.0"
DEFAULT_MASK_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_MASK_SEGMENTER = "facebook/sam2.1-hiera-tiny"


class EngineConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INPAINTBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    model: str = Field(
        DEFAULT_MODEL,
        description="Default model: a Hub id, a local diffusers folder or a single .safetensors file.",
    )
    model_revision: str | None = Field(
        None,
        description=(
            "Hub revision (commit hash, tag or branch) to load INPAINTBOT_MODEL at, when it is a Hub id; "
            "unset: the newest."
        ),
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
    max_faces_per_job: int = Field(
        16,
        ge=1,
        description=(
            "Most faces one automatic face mask repaints, each a denoising pass; a picture with more "
            "is refused."
        ),
    )
    face_detector_model: Path | None = Field(
        None, description="Optional YuNet ONNX file for cv2.FaceDetectorYN (better than Haar)."
    )
    safety_checker: str | None = Field(
        DEFAULT_SAFETY_CHECKER,
        description=(
            "NSFW checker for results (Hub id or local folder of a StableDiffusionSafetyChecker with "
            "its preprocessor_config.json); 'none' turns checking off, so no server policy applies."
        ),
    )
    # ControlNets: Hub ids, local diffusers folders or single .safetensors files, loaded on first use.
    controlnet_tile: str = Field(
        DEFAULT_CONTROLNET_TILE, min_length=1, description="Tile ControlNet for SD 1.x."
    )
    controlnet_inpaint: str = Field(
        DEFAULT_CONTROLNET_INPAINT, min_length=1, description="Inpaint ControlNet for SD 1.x."
    )
    controlnet_tile_sdxl: str | None = Field(
        DEFAULT_CONTROLNET_TILE_SDXL, description="Tile ControlNet for SDXL; empty: none."
    )
    controlnet_inpaint_sdxl: str | None = Field(
        None, description="Inpaint ControlNet for SDXL (no public default); unset: refused."
    )
    controlnet_base_model: str | None = Field(
        None,
        description=(
            "Regular (4-channel) model that ControlNet jobs run on when the chosen model is an "
            "inpainting checkpoint, which ControlNets were not trained with; unset: such jobs are refused."
        ),
    )

    sdxl_vae: str | None = Field(
        None,
        description=(
            "VAE (Hub id or local folder) that SDXL models load with instead of their own; "
            "'madebyollin/sdxl-vae-fp16-fix' runs in float16 where SDXL's own VAE is upcast to float32. "
            "Unset: the model's own."
        ),
    )
    compile: bool = Field(
        False,
        description=(
            "Compile each loaded model's UNet with torch.compile (dynamic shapes): faster steps after a "
            "slow first job; measure it with bench/gpu.py --compile before turning it on."
        ),
    )

    # Masks from words (mask_prompt): text -> boxes, then boxes -> masks (engine.masks.words).
    mask_detector: str | None = Field(
        DEFAULT_MASK_DETECTOR,
        description="Grounding DINO model (Hub id or local folder) for mask_prompt; 'none' turns it off.",
    )
    mask_segmenter: str | None = Field(
        DEFAULT_MASK_SEGMENTER,
        description="SAM 2 model (Hub id or local folder) for mask_prompt; 'none' turns it off.",
    )

    @field_validator(
        "controlnet_tile_sdxl",
        "controlnet_inpaint_sdxl",
        "controlnet_base_model",
        "model_revision",
        "sdxl_vae",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``INPAINTBOT_CONTROLNET_TILE_SDXL=`` in .env switches the default off."""
        return None if value == "" else value

    @field_validator("safety_checker", "mask_detector", "mask_segmenter", mode="before")
    @classmethod
    def _none_is_off(cls, value: object) -> object:
        """``INPAINTBOT_SAFETY_CHECKER=none`` (or empty) turns the checker off; the same for the
        models of masks from words."""
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value
