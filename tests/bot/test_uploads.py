"""Fitting results to Discord's upload limit."""

import io

import pytest
from PIL import Image

from bot.uploads import fit_image
from tests.pictures import photo, png_bytes


def test_a_png_that_fits_is_sent_as_is() -> None:
    png = png_bytes(photo(64, 48))
    fitted = fit_image(png, "out", len(png))
    assert (fitted.data, fitted.filename) == (png, "out.png")


def test_a_large_png_becomes_webp_at_full_size() -> None:
    png = png_bytes(photo(256, 192))
    fitted = fit_image(png, "out", len(png) // 3)
    assert fitted.filename == "out.webp" and len(fitted.data) <= len(png) // 3
    assert Image.open(io.BytesIO(fitted.data)).size == (256, 192)


def test_when_no_format_fits_the_picture_is_downscaled() -> None:
    png = png_bytes(photo(256, 192))
    fitted = fit_image(png, "out", 1500)
    width, height = Image.open(io.BytesIO(fitted.data)).size
    assert len(fitted.data) <= 1500 and width < 256 and abs(width / height - 256 / 192) < 0.1


def test_an_impossible_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fit in 10 bytes"):
        fit_image(png_bytes(photo(32, 32)), "out", 10)
