"""va2att.faces.images: decoding, colour order, conversions, EXIF, size limits, error reasons."""

import time

import cv2
import numpy as np
import pytest
from PIL import Image

from va2att.faces import images
from va2att.faces.images import ImageError, RGBImage, from_array, read_image


def _reason(path, **kw):
    with pytest.raises(ImageError) as e:
        read_image(path, **kw)
    return e.value.reason


def _pattern(h=60, w=80):
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = 200  # red
    a[:10, :10] = (0, 255, 0)  # green top-left marker
    return a


def test_from_array_order_is_required_and_applied():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    with pytest.raises(TypeError):
        from_array(bgr)  # no default order
    with pytest.raises(ValueError):
        from_array(bgr, order="brg")
    assert from_array(bgr, order="bgr").pixels[0, 0].tolist() == [0, 0, 255]
    assert from_array(bgr, order="rgb").pixels[0, 0].tolist() == [255, 0, 0]
    img = from_array(np.full((3, 3), 7, np.uint16) * 257, order="rgb")
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (3, 3, 3) and img.pixels.max() == 7
    with pytest.raises(ValueError):
        RGBImage(np.zeros((3, 3), np.uint8))
    assert not from_array(bgr, order="rgb").pixels.flags.writeable


def test_rgb_order_from_file(tmp_path):
    a = _pattern()
    cv2.imwrite(str(tmp_path / "a.png"), a[:, :, ::-1])
    img = read_image(tmp_path / "a.png")
    assert np.array_equal(img.pixels, a) and img.scale == 1.0 and img.original_size == (60, 80)


def test_grayscale_rgba_and_16bit_load_as_rgb(tmp_path):
    gray = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (20, 1))
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    cv2.imwrite(str(tmp_path / "g.jpg"), gray)
    cv2.imwrite(str(tmp_path / "g16.png"), gray.astype(np.uint16) * 257)
    rgba = np.dstack([np.full((20, 30, 3), (10, 20, 30), np.uint8), np.full((20, 30), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), rgba)  # BGRA on disk
    for name in ("g.png", "g.jpg", "g16.png"):
        img = read_image(tmp_path / name)
        assert img.pixels.shape == (20, 50, 3) and img.pixels.dtype == np.uint8
        assert np.array_equal(img.pixels[..., 0], img.pixels[..., 2])
        assert np.abs(img.pixels[..., 0].astype(int) - gray).max() <= 3
    img = read_image(tmp_path / "a.png")
    assert img.pixels.shape == (20, 30, 3) and img.pixels[0, 0].tolist() == [30, 20, 10]


def test_exif_orientation_is_honoured(tmp_path):
    a = _pattern()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "r.jpg")
    assert img.pixels.shape == (80, 60, 3) and img.original_size == (80, 60)
    # The green top-left marker ends up top-right after a clockwise rotation.
    assert img.pixels[3, -4, 1] > 200 and img.pixels[3, 3, 1] < 60


@pytest.mark.parametrize(
    "content,reason",
    [(None, "missing"), (b"", "empty"), (bytes(range(256)) * 8, "not_an_image"), ("half", "truncated")],
)
def test_error_reasons(tmp_path, content, reason):
    path = tmp_path / "x.jpg"
    if content == "half":
        _ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        content = buf.tobytes()[: len(buf) // 2]
    if content is not None:
        path.write_bytes(content)
    assert _reason(path) == reason


def _jpeg_with_header_size(tmp_path, width, height):
    """A small JPEG whose SOF0 header claims width x height (the data does not match)."""
    _ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 7] = height.to_bytes(2, "big")
    data[i + 7 : i + 9] = width.to_bytes(2, "big")
    path = tmp_path / f"big{width}x{height}.jpg"
    path.write_bytes(bytes(data))
    return path


def test_huge_header_is_refused_without_decoding(tmp_path):
    path = _jpeg_with_header_size(tmp_path, 60000, 60000)  # 3.6 gigapixels, 10 GB as RGB
    t = time.perf_counter()
    assert _reason(path) == "too_large"
    assert time.perf_counter() - t < 1.0


def test_large_jpeg_is_decoded_reduced(tmp_path, monkeypatch):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[1000:2000, 1500:2500] = 255
    cv2.imwrite(str(tmp_path / "big.jpg"), big)
    from PIL import JpegImagePlugin

    decoded = []
    original = JpegImagePlugin.JpegImageFile.load

    def spy(self):
        decoded.append(self.size)
        return original(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    img = read_image(tmp_path / "big.jpg", max_side=500)
    assert max(decoded[-1]) <= 1000  # DCT-scaled decode (1/4 or 1/8), never 4000 x 3000
    assert img.pixels.shape == (375, 500, 3) and img.original_size == (3000, 4000)
    assert img.scale == pytest.approx(0.125)
    # Pixel budget: a JPEG over it is reduced, a PNG over it is refused.
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 1_000_000)
    img = read_image(tmp_path / "big.jpg")
    assert img.pixels.shape[0] * img.pixels.shape[1] <= 1_000_000 and img.scale < 1
    cv2.imwrite(str(tmp_path / "big.png"), big[:1200, :1200])
    assert _reason(tmp_path / "big.png") == "too_large"


def test_min_scale_reduces_jpeg_decode(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((800, 800, 3), np.uint8))
    assert read_image(tmp_path / "a.jpg", min_scale=0.3).scale == 0.5
    assert read_image(tmp_path / "a.jpg", min_scale=0.1).scale == 0.125
    assert read_image(tmp_path / "a.jpg").scale == 1.0


def _gif(*frames) -> bytes:
    import io

    buffer = io.BytesIO()
    images_ = [Image.fromarray(frame) for frame in frames]
    images_[0].save(buffer, "GIF", save_all=True, append_images=images_[1:])
    return buffer.getvalue()


@pytest.mark.parametrize(("side", "offset"), [(8000, 0), (1, 60000)])
def test_a_gif_frame_larger_than_its_screen_is_checked_at_its_own_size(tmp_path, side, offset):
    data = bytearray(_gif(np.full((56, 56), 90, np.uint8)))
    data[6:10] = (16).to_bytes(2, "little") * 2  # a 16 x 16 logical screen
    at = data.index(b",", 13)  # the first image descriptor: left, top, width, height
    data[at + 1:at + 9] = offset.to_bytes(2, "little") * 2 + side.to_bytes(2, "little") * 2
    (tmp_path / "frame.gif").write_bytes(bytes(data))
    assert _reason(tmp_path / "frame.gif") == "too_large"  # before any pixel is decoded


def test_only_the_first_frame_of_an_animated_gif_is_decoded(tmp_path):
    first, second = np.full((56, 56), 30, np.uint8), np.full((56, 56), 220, np.uint8)
    data = _gif(first, second)
    second_frame = data.rindex(b",")  # the last image descriptor (no pixel data holds a comma here)
    assert second_frame > data.index(b",", 13)
    (tmp_path / "cut.gif").write_bytes(data[: second_frame + 12])  # the second frame cut inside its data
    image = read_image(tmp_path / "cut.gif")
    assert image.pixels.shape == (56, 56, 3) and (image.pixels == 30).all()
