"""Odd but valid image files decode to what a viewer shows (issue #21 item 5)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from editgan_core.photos.decode import DecodeError, decode_photo
from editgan_core.photos.export import encode_like, output_format
from editgan_core.pipeline import InputError, prepare_image

REPO = Path(__file__).resolve().parents[1]
GREY = (142, 142, 142)


def ramp(h: int = 24, w: int = 32) -> np.ndarray:
    """A horizontal ramp 0..1 (float64), so a wrong scale shows up as white, black or a wrong slope."""
    return np.tile(np.linspace(0.0, 1.0, w), (h, 1))


def assert_ramp(pixels: np.ndarray, tolerance: float = 1.5) -> None:
    expected = np.rint(ramp(*pixels.shape[:2]) * 255)
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert np.abs(pixels.astype(float) - expected[..., None]).max() <= tolerance


def test_sixteen_bit_grey_png_keeps_its_tones(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.rint(ramp() * 65535).astype(np.uint16)).save(path)
    photo = decode_photo(path)
    assert photo.source_mode.startswith("I;16") and photo.format == "PNG"
    assert_ramp(photo.pixels)
    crop = prepare_image(path, 16)  # the old path embedded this file as pure white
    assert 90 < crop.mean() < 165 and crop.min() < 60 and crop.max() > 195


def test_sixteen_bit_rgb_png(tmp_path):
    rgb = np.stack([ramp(), 1 - ramp(), np.full_like(ramp(), 0.5)], axis=2)
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), np.rint(rgb[..., ::-1] * 65535).astype(np.uint16))
    pixels = decode_photo(path).pixels
    assert np.abs(pixels.astype(float) - np.rint(rgb * 255)).max() <= 1.5


def test_float_tiffs_grey_and_rgb(tmp_path):
    grey = tmp_path / "f.tif"
    Image.fromarray(ramp().astype(np.float32)).save(grey)
    photo = decode_photo(grey)
    assert photo.source_mode == "F"
    assert_ramp(photo.pixels)
    assert prepare_image(grey, 16).mean() > 60  # the old path embedded this file as black
    rgb = tmp_path / "rgbf.tif"  # Pillow cannot open float RGB TIFF: the OpenCV path reads it
    data = np.stack([ramp(), ramp(), ramp()], axis=2).astype(np.float32)
    data[..., 0] = 0.25
    cv2.imwrite(str(rgb), data[..., ::-1])
    photo = decode_photo(rgb)
    assert photo.format == "TIFF" and photo.source_mode == "float32"
    assert np.all(photo.pixels[..., 0] == 64)
    assert_ramp(photo.pixels[..., 1:].repeat(2, axis=2)[..., :3])


def test_float_outside_unit_range_is_stretched_and_nan_refused():
    hdr = (ramp() * 4000 - 10).astype(np.float32)
    assert_ramp(decode_photo(hdr).pixels)
    with pytest.raises(DecodeError, match="NaN"):
        decode_photo(np.full((4, 4, 3), np.nan, np.float32))


def test_palette_with_transparency_and_alpha_on_the_background(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :4, 3] = 255  # left half opaque red, right half transparent
    path = tmp_path / "p.png"
    Image.fromarray(rgba, "RGBA").quantize(colors=4, method=Image.Quantize.FASTOCTREE).save(path)
    photo = decode_photo(path, GREY)
    assert photo.source_mode == "P"
    assert tuple(photo.pixels[0, 0]) == (255, 0, 0) and tuple(photo.pixels[0, 7]) == GREY
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0], la[..., 1] = 255, 128  # white at half opacity over grey
    assert tuple(decode_photo(la, (0, 0, 0)).pixels[0, 0]) == (128, 128, 128)
    png = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(png)
    pixels = decode_photo(png, GREY).pixels
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[0, 7]) == GREY


def test_cmyk_greyscale_and_bilevel(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan ink
    path = tmp_path / "c.jpg"
    cmyk.save(path, quality=100)
    photo = decode_photo(path)
    assert photo.source_mode == "CMYK"
    r, g, b = photo.pixels[4, 4].astype(int)
    assert r < 40 and g > 215 and b > 215
    grey = Image.fromarray((ramp() * 255).round().astype(np.uint8), "L")
    assert_ramp(decode_photo(grey).pixels, tolerance=0)
    one = Image.new("1", (4, 4), 1)
    assert decode_photo(one).pixels.min() == 255


def test_animated_files_give_their_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    gif, webp = tmp_path / "a.gif", tmp_path / "a.webp"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(webp, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    for path in (gif, webp):
        r, _, b = decode_photo(path).pixels[4, 4].astype(int)
        assert r > 200 and b < 50, path.name


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)  # left half red
    pil = Image.fromarray(image)
    exif = pil.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red ends up on top
    path = tmp_path / "r.jpg"
    pil.save(path, exif=exif, quality=100)
    photo = decode_photo(path)
    assert photo.size == (20, 40)
    assert photo.pixels[5, 10, 0] > 200 and photo.pixels[35, 10, 0] < 50


def test_sizes_are_bounded_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)
    monkeypatch.setattr("editgan_core.photos.limits.MAX_INPUT_PIXELS", 100)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image over the limit")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(DecodeError, match="20x20; the limit"):
        decode_photo(path)
    with pytest.raises(InputError, match="limit"):
        prepare_image(path, 8)
    with pytest.raises(DecodeError, match="limit"):
        decode_photo(np.zeros((20, 20), np.uint16))
    monkeypatch.setattr("editgan_core.photos.limits.MAX_FILE_BYTES", 10)
    with pytest.raises(DecodeError, match="file is"):
        decode_photo(path)


def test_opencv_fallback_is_bounded_too(tmp_path):
    path = tmp_path / "rgbf.tif"
    cv2.imwrite(str(path), np.zeros((20, 20, 3), np.float32))
    code = ("import sys; from editgan_core.photos.decode import decode_photo, DecodeError\n"
            "try:\n    decode_photo(sys.argv[1])\nexcept DecodeError as e:\n    print(e)\n")
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "100", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=True)
    assert "larger than the limit" in out.stdout


def test_unreadable_and_odd_arrays(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(DecodeError, match="cannot read"):
        decode_photo(tmp_path / "junk.png")
    with pytest.raises(DecodeError, match="cannot read"):
        decode_photo(tmp_path / "missing.png")
    with pytest.raises(DecodeError, match="shape"):
        decode_photo(np.zeros((4, 4, 5), np.uint8))
    assert decode_photo(np.ones((3, 3), bool)).pixels.min() == 255
    assert_ramp(decode_photo(np.rint(ramp() * 65535).astype(np.uint16)).pixels)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "GIF", None])
def test_exports_keep_the_format(fmt):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    data = encode_like(pixels, fmt)
    back = Image.open(io.BytesIO(data))
    assert back.format == output_format(fmt) and back.size == (10, 12)
    if back.format != "JPEG":  # lossless formats give the pixels back exactly
        assert np.array_equal(np.asarray(back.convert("RGB")), pixels)
