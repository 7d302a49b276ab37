"""Image loading with a colour order fixed by type.

`RGBImage` is the only image type the detector and the aligner accept. Pixels are
always H x W x 3 uint8 in RGB order, so a BGR array (OpenCV's native order) can only
enter through `from_array(..., order="bgr")`, which reorders it. `read_image` decodes
a file with Pillow: EXIF orientation applied, grayscale / palette / 16-bit / RGBA
converted to 8-bit RGB (alpha is dropped), and the header checked before decoding so
that a huge image is decoded at a reduced size (JPEG DCT scaling) or refused.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_DECODE_PIXELS = 50_000_000  # never allocate more decoded pixels than this (150 MB of RGB)
REASONS = ("missing", "unreadable", "empty", "truncated", "not_an_image", "too_large")


class ImageError(Exception):
    """An image, or a face in it, that cannot be used; `reason` names why, as preparation's report counts it.

    Reading raises it with one of `REASONS`; alignment (`va2att.faces.align.align_any`) with "no_face".
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self):  # picklable across worker processes
        return (ImageError, (self.reason, self.message))


@dataclass(frozen=True)
class RGBImage:
    """A decoded image in RGB order.

    Args:
        pixels: np.ndarray, H x W x 3 uint8, RGB order, read-only.
        scale: float, size of `pixels` divided by the original size (< 1 when the image was
            decoded reduced). Original coordinates = pixel coordinates / scale.
        original_size: tuple (height, width) of the original (EXIF-oriented) image.
    """

    pixels: np.ndarray
    scale: float = 1.0
    original_size: tuple[int, int] | None = None

    def __post_init__(self):
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(
                "RGBImage.pixels must be an H x W x 3 uint8 array; use from_array() to convert. "
                f"Received: {type(p).__name__} {getattr(p, 'dtype', '')} {getattr(p, 'shape', '')}"
            )
        if not (self.scale > 0):
            raise ValueError(f"RGBImage.scale must be > 0. Received: scale={self.scale}")
        if self.original_size is None:
            object.__setattr__(self, "original_size", (int(p.shape[0]), int(p.shape[1])))
        if p.flags.writeable:
            p = np.ascontiguousarray(p).copy() if not p.flags.c_contiguous else p
            p.flags.writeable = False
            object.__setattr__(self, "pixels", p)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def resized(self, max_side: int) -> RGBImage:
        """A copy whose longer side is at most `max_side` (area interpolation); scale updated."""
        import cv2

        longest = max(self.height, self.width)
        if longest <= max_side:
            return self
        f = max_side / longest
        size = (max(1, round(self.width * f)), max(1, round(self.height * f)))
        pixels = cv2.resize(np.asarray(self.pixels), size, interpolation=cv2.INTER_AREA)
        return RGBImage(pixels, self.scale * pixels.shape[1] / self.width, self.original_size)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.size and a.max() > 255):
        return (np.clip(a, 0, 65535).astype(np.uint32) // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32))
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def from_array(array, *, order: str) -> RGBImage:
    """Wrap an array as an RGBImage.

    Args:
        array: H x W (gray), H x W x 1, H x W x 3 or H x W x 4 array; uint8, uint16 (scaled
            down by 257), bool, or float (0-1 or 0-255).
        order: "rgb" or "bgr" (required): the channel order of `array`. A fourth channel is
            alpha and is dropped.
    """
    if order not in ("rgb", "bgr"):
        raise ValueError(f"order must be 'rgb' or 'bgr'. Received: order={order!r}")
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"Expected an H x W, H x W x 1, x 3 or x 4 array. Received: shape={a.shape}")
    a = _to_uint8(a)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    else:
        a = a[:, :, :3]
        if order == "bgr":
            a = a[:, :, ::-1]
    return RGBImage(np.ascontiguousarray(a))


def _pil_to_array(im) -> np.ndarray:
    """Pillow image of any mode -> H x W x 3 uint8 RGB."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im)
        if mode == "F":
            a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
        elif mode != "I" or (a.size and a.max() > 255):
            a = (np.clip(a, 0, 65535).astype(np.uint32) // 257).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode != "RGB":
        im = im.convert("RGB")  # L, LA, P, PA, RGBA (alpha dropped), CMYK, YCbCr, 1
    return np.asarray(im, dtype=np.uint8)


def read_image(path, max_side: int | None = None, *, min_scale: float | None = None) -> RGBImage:
    """Decode an image file into an RGBImage without ever allocating a huge buffer.

    Args:
        path: str or Path of the file.
        max_side: int or None; if given, the longer side of the result is at most this.
        min_scale: float or None; if given, a JPEG may be decoded reduced by 1/2, 1/4 or 1/8
            as long as the result keeps at least this fraction of the original size (fast path
            for preparation, where the face only needs to keep enough pixels).

    Raises:
        ImageError: reason "missing", "unreadable", "empty", "truncated", "not_an_image" or
            "too_large" (more than `MAX_DECODE_PIXELS` even at the largest reduction).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError("missing", f"{path}: no such file") from None
    except OSError as e:
        raise ImageError("unreadable", f"{path}: {e}") from None
    if not path.is_file():
        raise ImageError("unreadable", f"{path}: not a regular file")
    if st.st_size == 0:
        raise ImageError("empty", f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
                swap = orientation in (5, 6, 7, 8)
                ow, oh = (h, w) if swap else (w, h)
                # Largest acceptable reduction, from the caller's limits and the pixel budget.
                target = 1.0
                if max_side is not None:
                    target = min(target, max_side / max(w, h))
                if min_scale is not None:
                    target = min(target, min_scale)
                if im.format == "JPEG":
                    # JPEG decodes at 1/1, 1/2, 1/4 or 1/8: the largest reduction that keeps `target`,
                    # or more if needed to fit the pixel budget.
                    d = max([k for k in (1, 2, 4, 8) if 1 / k >= target] or [1])
                    while d < 8 and -(-w // d) * -(-h // d) > MAX_DECODE_PIXELS:
                        d *= 2
                    if d > 1:
                        im.draft("RGB" if im.mode not in ("L", "1") else "L", (-(-w // d), -(-h // d)))
                if im.size[0] * im.size[1] > MAX_DECODE_PIXELS:
                    raise ImageError("too_large", f"{path}: {w}x{h} pixels exceeds the decode limit")
                im.load()
                dw = im.size[0]
                if orientation != 1:
                    im = ImageOps.exif_transpose(im)
                pixels = _pil_to_array(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError("too_large", f"{path}: {e}") from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", f"{path}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        text = str(e).lower()
        reason = "truncated" if ("truncated" in text or "premature" in text or isinstance(e, EOFError)) else "unreadable"
        raise ImageError(reason, f"{path}: {e}") from None
    img = RGBImage(np.ascontiguousarray(pixels), dw / w, (oh, ow))
    if max_side is not None:
        img = img.resized(max_side)
    return img
