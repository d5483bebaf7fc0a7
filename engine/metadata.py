"""Generation parameters in AUTOMATIC1111's PNG ``parameters`` text chunk.

Discord strips PNG metadata from previews, but the original file keeps it, and every PNG-info reader
(A1111, ComfyUI, Civitai) shows it.
"""

from __future__ import annotations

import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.controlnet import MODULES, short_name
from engine.samplers import A1111_NAMES
from engine.settings import OUTPAINT_FIELDS, Area, ControlNet, InpaintSettings

# PNG compression 1 is ~5x faster than Pillow's default 6 and ~10% bigger: big photos must not stall.
PNG_COMPRESS_LEVEL = 1


def a1111_parameters(
    settings: InpaintSettings,
    *,
    seed: int,
    size: tuple[int, int],
    model: str,
    mask_source: str,
    controlnet: str | None = None,
) -> str:
    """The three-part text A1111 writes: prompt line, negative prompt line, then ``Key: value`` pairs."""
    fields = {
        "Steps": settings.steps,
        "Sampler": A1111_NAMES[settings.sampler],
        "CFG scale": f"{settings.guidance:g}",
        "Seed": seed,
        "Size": f"{size[0]}x{size[1]}",
        "Model": _quote(model),
        "Denoising strength": f"{settings.strength:g}",
        "Mask blur": settings.mask_blur,
        "Masked content": settings.masked_content.value,
    }
    if not settings.outpaints:  # outpainting always paints windows of the border at the model's size
        fields["Inpaint area"] = "Only masked" if settings.area == Area.MASKED else "Whole picture"
        fields["Only masked padding, pixels"] = settings.padding
    fields["Mask source"] = _quote(mask_source)
    if settings.mask_prompt is not None:
        fields["Mask prompt"] = _quote(settings.mask_prompt)
        if settings.mask_pick != "all":
            fields["Mask pick"] = settings.mask_pick
    if settings.invert_mask:
        fields["Mask mode"] = "Inpaint not masked"
    if settings.mask_grow:
        fields["Mask grow"] = settings.mask_grow
    if settings.zoom is not None:
        fields["Outpaint zoom"] = f"{settings.zoom:g}"
    elif settings.outpaints:
        sides = ((name, getattr(settings, name) or 0) for name in OUTPAINT_FIELDS[1:])
        fields["Outpaint pixels"] = _quote(", ".join(f"{name} {value}" for name, value in sides))
    if controlnet is not None:
        fields["ControlNet 0"] = _quote(_controlnet_unit(settings, controlnet))
    lines = [settings.prompt]
    if settings.negative_prompt:
        lines.append(f"Negative prompt: {settings.negative_prompt}")
    lines.append(", ".join(f"{key}: {value}" for key, value in fields.items()))
    return "\n".join(lines)


def _controlnet_unit(settings: InpaintSettings, controlnet: str) -> str:
    """sd-webui-controlnet's unit text; for tile_resample, Threshold A is the down-sampling rate."""
    unit = {
        "Module": MODULES[settings.controlnet],
        "Model": short_name(controlnet),
        "Weight": f"{settings.control_weight:g}",
        "Resize Mode": "Crop and Resize",
    }
    if settings.controlnet is ControlNet.TILE:
        unit["Threshold A"] = f"{settings.tile_downsample:g}"
    unit |= {
        "Guidance Start": f"{settings.control_start:g}",
        "Guidance End": f"{settings.control_end:g}",
        "Control Mode": "Balanced",
    }
    return ", ".join(f"{key}: {value}" for key, value in unit.items())


def _quote(value: str) -> str:
    """A1111 quotes values that contain the separators of its ``Key: value, ...`` line."""
    if any(char in value for char in ',:"'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def encode_png(image: Image.Image, parameters: str) -> bytes:
    info = PngInfo()
    info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
