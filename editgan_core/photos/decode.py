"""Any valid image -> 8-bit sRGB at full resolution, the way a viewer would show it.

Pillow's ``convert("RGB")`` clips 16-bit grey to white and float images to black, ignores the alpha
channel and the ICC profile: each kind is handled here explicitly. The pixel count is checked from
the header before anything is decoded. Files Pillow cannot open (float RGB TIFF) go to OpenCV, whose
own pixel cap is set to the same bound when ``editgan_core`` is imported.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from editgan_core.photos import PhotoError, limits

BackgroundColour = tuple[int, int, int]
WHITE: BackgroundColour = (255, 255, 255)
_SRGB = ImageCms.createProfile("sRGB")
_RGB_LIKE = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}


class DecodeError(PhotoError):
    """The file is not an image we can read, or too big; the message is meant for the user."""


@dataclass(frozen=True)
class Photo:
    """A decoded photo: RGB pixels (H, W, 3) uint8 upright, and what is needed to save an edit like it."""

    pixels: np.ndarray
    format: str | None  # "PNG", "JPEG", "WEBP", ... as read; None for arrays
    source_mode: str  # Pillow mode (or numpy dtype) before conversion, for messages and tests

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]


def check_pixels(width: int, height: int) -> None:
    """Refuse images over the pixel bound (before decoding them)."""
    if width * height > limits.MAX_INPUT_PIXELS:
        raise DecodeError(f"image is {width}x{height}; the limit is {limits.MAX_INPUT_PIXELS // 1_000_000} MP")


def _integer_top(values: np.ndarray) -> int:
    """The full-scale value of integer samples: their dtype's, or for wide types the smallest usual depth that fits."""
    if values.dtype in (np.uint8, np.uint16):
        return int(np.iinfo(values.dtype).max)
    high = int(values.max(initial=0))
    return next((top for top in (255, 65535) if high <= top), int(np.iinfo(values.dtype).max))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Integer or float samples -> uint8 by their nominal range (float: [0, 1], else its own min..max)."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    if np.issubdtype(values.dtype, np.integer):
        scaled = np.clip(values, 0, None).astype(np.float64) * (255.0 / _integer_top(values))
        return np.rint(scaled).astype(np.uint8)
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise DecodeError("the image contains NaN or infinite values")
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if lo >= 0 and hi <= 1:
        values = values * 255.0
    elif lo < 0 or hi > 255:  # HDR or signed data: stretch what is there
        values = (values - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


def composite(rgb: np.ndarray, alpha: np.ndarray, background: BackgroundColour) -> np.ndarray:
    """Straight alpha (uint8) over a flat background colour."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    bg = np.asarray(background, np.float32)
    return np.rint(rgb.astype(np.float32) * a + bg * (1.0 - a)).astype(np.uint8)


def from_array(array: np.ndarray, background: BackgroundColour = WHITE) -> np.ndarray:
    """(H, W), (H, W, 1..4) of any numeric dtype -> (H, W, 3) uint8; a 2nd/4th channel is alpha."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape[:2]:
        raise DecodeError(f"expected an image array (H, W[, 1-4 channels]), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DecodeError(f"expected numeric pixels, got {array.dtype}")
    check_pixels(array.shape[1], array.shape[0])
    channels = array.shape[2]
    colour = array[..., :3] if channels >= 3 else array[..., :1]
    rgb = np.repeat(to_uint8(colour), 3, axis=2) if channels < 3 else to_uint8(colour)
    if channels in (2, 4):
        return composite(rgb, to_uint8(array[..., -1]), background)
    return np.ascontiguousarray(rgb)


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (CMYK print profiles, wide-gamut phones); without one, Pillow's own mapping."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "CMYK"):
        try:
            return ImageCms.profileToProfile(image, io.BytesIO(icc), _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the plain conversion below is what most viewers show
    return image.convert("RGB")


def from_pil(image: Image.Image, background: BackgroundColour = WHITE) -> np.ndarray:
    """A Pillow image (first frame, any mode) -> upright (H, W, 3) uint8."""
    check_pixels(image.width, image.height)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    with contextlib.suppress(OSError, ValueError, SyntaxError):  # unreadable EXIF: the pixels as stored
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return from_array(np.asarray(image), background)
    if mode in _RGB_LIKE or (mode == "RGB" and "transparency" not in image.info):
        return np.asarray(_to_srgb(image) if mode in ("RGB", "CMYK") else image.convert("RGB")).copy()
    if mode == "P" or "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"))
        return composite(rgba[..., :3], rgba[..., 3], background)
    return np.repeat(np.asarray(image.convert("L"))[..., None], 3, axis=2)  # 1, L and other grey modes


def _open_with_opencv(data: bytes, background: BackgroundColour) -> tuple[np.ndarray, str]:
    """What Pillow cannot identify (float RGB TIFF): OpenCV, bounded by its pixel cap."""
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise DecodeError(f"image is larger than the limit of {limits.MAX_INPUT_PIXELS // 1_000_000} MP") from exc
        array = None
    if array is None:
        raise DecodeError("cannot read the image: not a supported image file")
    if array.ndim == 3 and array.shape[2] >= 3:  # OpenCV orders colours BGR(A)
        array = array[..., [2, 1, 0, *range(3, array.shape[2])]]
    return from_array(array, background), str(array.dtype)


def decode_photo(source: str | Path | bytes | Image.Image | np.ndarray,
                 background: BackgroundColour = WHITE) -> Photo:
    """Decode a path, file bytes, Pillow image or array into a ``Photo`` (alpha composited on ``background``)."""
    if isinstance(source, np.ndarray):
        return Photo(from_array(source, background), None, str(source.dtype))
    if isinstance(source, Image.Image):
        return Photo(from_pil(source, background), source.format, source.mode)
    data = _read_bytes(source) if isinstance(source, (str, Path)) else bytes(source)
    try:
        with Image.open(io.BytesIO(data)) as image:
            check_pixels(image.width, image.height)
            return Photo(from_pil(image, background), image.format, image.mode)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        pixels, mode = _open_with_opencv(data, background)
        return Photo(pixels, "TIFF" if data[:4] in (b"II*\0", b"MM\0*") else None, mode)
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"image is larger than the limit of {limits.MAX_INPUT_PIXELS // 1_000_000} MP") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"cannot read the image: {exc}") from exc


def _read_bytes(path: str | Path) -> bytes:
    """The file's bytes, refusing files larger than any image within the pixel bound could reasonably be."""
    try:
        size = Path(path).stat().st_size
        if size > limits.MAX_FILE_BYTES:
            raise DecodeError(f"the file is {size / 1e6:.0f} MB; the limit is {limits.MAX_FILE_BYTES // 1_000_000} MB")
        return Path(path).read_bytes()
    except OSError as exc:
        raise DecodeError(f"cannot read the image: {exc.strerror or exc}") from exc
