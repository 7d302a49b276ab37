"""Encoded images checked before they are decoded, inside a TensorFlow graph (the `serving_bytes` signature).

A served model must not let one request decide how much memory it takes: a 438 KB PNG can declare
20000 x 20000 pixels. `checked_faces` reads each image's format and size from its header (magic
bytes; PNG IHDR, GIF logical screen, BMP info header, `tf.io.extract_jpeg_shape` for JPEG), refuses
what is not JPEG, PNG, GIF or BMP and what declares more than `MAX_PIXELS` pixels, and decodes only
the rest, to grayscale (GIF: its first frame; GIF and BMP are decoded as RGB, then converted).

Errors are per image: every image gets an `error` string, empty when it was decoded, else the
reason (`ERRORS`); its pixels are then zeros and the signature answers NaN for it. A file whose
header passes but whose body is corrupt fails the whole request with a clean `InvalidArgumentError`
(TensorFlow's decoders cannot fail one element of a batch).
"""

from __future__ import annotations

MAX_PIXELS = 4096 * 4096  # decoded pixels allowed per image (an aligned face needs a few thousand)
HEADER_BYTES = 26  # enough for the PNG, GIF and BMP size fields
FORMATS = ("unknown", "jpeg", "png", "gif", "bmp")
ERRORS = {
    "format": "not a JPEG, PNG, GIF or BMP image",
    "size": "the header gives no usable size",
    "too_large": f"more than {MAX_PIXELS} pixels (the limit per image)",
}


def _bytes(head, start: int, count: int, little_endian: bool):
    """An unsigned integer from `count` header bytes (int64)."""
    import tensorflow as tf

    part = tf.cast(head[start : start + count], tf.int64)
    if little_endian:
        part = tf.reverse(part, [0])
    value = tf.constant(0, tf.int64)
    for i in range(count):
        value = value * 256 + part[i]
    return value


def image_format(data):
    """The format code (index in `FORMATS`) of one encoded image, from its magic bytes (int32 scalar)."""
    import tensorflow as tf

    def starts(magic: bytes):
        return tf.equal(tf.strings.substr(data, 0, len(magic)), magic)

    jpeg, png = starts(b"\xff\xd8\xff"), starts(b"\x89PNG\r\n\x1a\n")
    gif = tf.logical_or(starts(b"GIF87a"), starts(b"GIF89a"))
    bmp = starts(b"BM")
    return tf.case([(jpeg, lambda: 1), (png, lambda: 2), (gif, lambda: 3), (bmp, lambda: 4)], default=lambda: 0)


def header_size(data, fmt):
    """(height, width) int64 of one encoded image from its header; (0, 0) when unknown."""
    import tensorflow as tf

    padded = tf.strings.substr(tf.strings.join([data, b"\0" * HEADER_BYTES]), 0, HEADER_BYTES)
    head = tf.io.decode_raw(padded, tf.uint8)

    def png():
        return _bytes(head, 20, 4, False), _bytes(head, 16, 4, False)

    def gif():
        return _bytes(head, 8, 2, True), _bytes(head, 6, 2, True)

    def bmp():
        height = _bytes(head, 22, 4, True)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # negative height: a top-down bitmap
        return height, _bytes(head, 18, 4, True)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(fmt, [unknown, jpeg, png, gif, bmp])


def _decode_gray(data, fmt):
    import tensorflow as tf

    def gray_decoder():  # JPEG and PNG decode straight to one channel
        return tf.io.decode_image(data, channels=1, expand_animations=False, dtype=tf.uint8)

    def rgb_decoder():  # GIF (first frame) and BMP decode to RGB only
        rgb = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        gray = tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)

    image = tf.cond(fmt >= 3, rgb_decoder, gray_decoder)
    return tf.ensure_shape(image, [None, None, 1])


def checked_faces(image_bytes, max_pixels: int = MAX_PIXELS):
    """Encoded aligned faces, string `[N]` -> (float32 `[N, 48, 48, 1]` network inputs, string `[N]` errors).

    Each image's header is checked first; only images of a known format and at most `max_pixels`
    pixels are decoded (then as `va2att.faces.network_input.aligned_input` does). Refused images give zeros
    and a non-empty error.
    """
    import tensorflow as tf

    from va2att.config import INPUT_SIZE
    from va2att.faces.network_input import aligned_input

    def one(data):
        fmt = image_format(data)
        height, width = header_size(data, fmt)
        usable = tf.logical_and(height > 0, width > 0)
        small = height * width <= max_pixels
        error = tf.case(
            [(tf.equal(fmt, 0), lambda: tf.constant(ERRORS["format"])),
             (tf.logical_not(usable), lambda: tf.constant(ERRORS["size"])),
             (tf.logical_not(small), lambda: tf.strings.format(
                 "{}x{} pixels: " + ERRORS["too_large"], (width, height)))],
            default=lambda: tf.constant(""))
        face = tf.cond(tf.equal(error, ""),
                       lambda: aligned_input(tf.cast(_decode_gray(data, fmt), tf.float32)),
                       lambda: tf.zeros([INPUT_SIZE, INPUT_SIZE, 1], tf.float32))
        return face, error

    return tf.map_fn(
        one,
        image_bytes,
        fn_output_signature=(tf.TensorSpec([INPUT_SIZE, INPUT_SIZE, 1], tf.float32), tf.TensorSpec([], tf.string)),
    )
