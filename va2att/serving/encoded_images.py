"""Encoded images checked before they are decoded, inside a TensorFlow graph (the `serving_bytes` signature).

A served model must not let one request decide how much memory it takes: a 438 KB PNG can declare
20000 x 20000 pixels, a 48 KB GIF can hold one 8000 x 8000 frame behind a 16 x 16 screen, and a
1.6 MB GIF can hold 120 frames of 4096 x 4096. `checked_faces` reads each image's format and size
from its header (magic bytes; PNG IHDR, BMP info header, `tf.io.extract_jpeg_shape` for JPEG; for a
GIF the logical screen and its first frame's own descriptor, `gif_first_frame`), refuses what is not
JPEG, PNG, GIF or BMP and what declares more than `MAX_PIXELS` pixels, and decodes only the rest, to
grayscale. A GIF is cut after its first frame before it reaches the decoder: TensorFlow's GIF decoder
(giflib's `DGifSlurp`, behind `decode_gif` and `decode_image`) reads every frame of the file into
memory, `expand_animations=False` only drops them afterwards.

Errors are per image: every image gets an `error` string, empty when it was decoded, else the
reason (`ERRORS`); its pixels are then zeros and the signature answers NaN for it. That holds for
failures inside TensorFlow's decoders too (a body that is corrupt or cut short, a JPEG cut inside
its header): each image is checked and decoded as one element of a `tf.data` pipeline whose failed
elements are dropped (`ignore_errors`) and reported as `ERRORS["corrupt"]`, so they never fail the
other images of the request. An image that fails to decode to one channel (a CMYK JPEG) is decoded
again through RGB before it counts as corrupt.
"""

from __future__ import annotations

MAX_PIXELS = 4096 * 4096  # decoded pixels allowed per image (an aligned face needs a few thousand)
# Data blocks of a GIF walked to find the end of its first frame (255 bytes each: 32 MB, more than the
# LZW data of any first frame within MAX_PIXELS, 12 bits a pixel at worst); a longer walk is refused.
MAX_GIF_BLOCKS = 2**17
_HOPS_PER_STEP = 16  # GIF data blocks skipped per loop iteration (fewer iterations, same result)
HEADER_BYTES = 26  # enough for the PNG and BMP size fields
FORMATS = ("unknown", "jpeg", "png", "gif", "bmp")
ERRORS = {
    "format": "not a JPEG, PNG, GIF or BMP image",
    "size": "the header gives no usable size",
    "too_large": f"more than {MAX_PIXELS} pixels (the limit per image)",
    "corrupt": "the image data is corrupt or cut short: it cannot be decoded",
    "gif_frame": "a GIF whose first frame is missing or cut short",
    "gif_blocks": f"a GIF whose first frame takes more than {MAX_GIF_BLOCKS} data blocks",
}
_GIF_EXTENSION, _GIF_IMAGE, _GIF_TRAILER = 0x21, 0x2C, b";"


def _bytes(head, start, count: int, little_endian: bool):
    """An unsigned integer from `count` header bytes starting at `start` (int64)."""
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
    """(height, width) int64 of one encoded JPEG, PNG or BMP from its header; (0, 0) for any other format
    (a GIF's size is its first frame's: `gif_first_frame`)."""
    import tensorflow as tf

    padded = tf.strings.substr(tf.strings.join([data, b"\0" * HEADER_BYTES]), 0, HEADER_BYTES)
    head = tf.io.decode_raw(padded, tf.uint8)

    def png():
        return _bytes(head, 20, 4, False), _bytes(head, 16, 4, False)

    def bmp():
        height = _bytes(head, 22, 4, True)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # negative height: a top-down bitmap
        return height, _bytes(head, 18, 4, True)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(fmt, [unknown, jpeg, png, unknown, bmp])


def gif_first_frame(data):
    """One GIF cut after its first frame: (a one-frame GIF, height, width, problem).

    The walk follows the file's structure (logical screen, global colour table, extension blocks,
    the first image descriptor, its local colour table and LZW data blocks) and never decodes. Height
    and width (int64) cover the logical screen and the first frame's own extent (left + width,
    top + height), whichever is larger, so a frame larger than its screen is counted at its size.
    `problem` is "" or a key of `ERRORS` (no first frame, cut short, too many blocks).
    """
    import tensorflow as tf

    size = tf.strings.length(data)
    b = tf.cast(tf.io.decode_raw(tf.strings.join([data, b"\0" * 16]), tf.uint8), tf.int32)
    last = tf.size(b) - 1

    def at(position):
        return tf.gather(b, tf.minimum(position, last))

    def u16(position):
        return tf.cast(at(position) + 256 * at(position + 1), tf.int64)

    def colour_table(packed):  # bytes of the colour table that a packed field announces
        return tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0,
                        3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(packed, 7)), 0)

    def skip_blocks(position, steps):
        """Past the data blocks starting at `position` (each a length byte and its bytes, a 0 ending them)."""

        def more(p, n):
            return tf.logical_and(tf.logical_and(p < size, n < MAX_GIF_BLOCKS), at(p) > 0)

        def hop(p, n):
            for _ in range(_HOPS_PER_STEP):
                p = tf.where(tf.logical_and(p < size, at(p) > 0), p + at(p) + 1, p)
            return p, n + _HOPS_PER_STEP

        position, steps = tf.while_loop(more, hop, (position, steps))
        return position + 1, steps

    def extension(p, n):
        return tf.logical_and(tf.logical_and(p < size, n < MAX_GIF_BLOCKS), tf.equal(at(p), _GIF_EXTENSION))

    start = 13 + colour_table(at(10))
    image, steps = tf.while_loop(extension, lambda p, n: skip_blocks(p + 2, n), (start, tf.constant(0)))
    end, steps = skip_blocks(image + 10 + colour_table(at(image + 9)) + 1, steps)
    height = tf.maximum(u16(8), u16(image + 3) + u16(image + 7))
    width = tf.maximum(u16(6), u16(image + 1) + u16(image + 5))
    problem = tf.case([(steps >= MAX_GIF_BLOCKS, lambda: tf.constant("gif_blocks")),
                       (tf.logical_or(tf.not_equal(at(image), _GIF_IMAGE), end > size),
                        lambda: tf.constant("gif_frame"))], default=lambda: tf.constant(""))
    return tf.strings.join([tf.strings.substr(data, 0, end), _GIF_TRAILER]), height, width, problem


def _decode_gray(data, fmt, through_rgb):
    import tensorflow as tf

    def gray_decoder():  # JPEG and PNG decode straight to one channel
        return tf.io.decode_image(data, channels=1, expand_animations=False, dtype=tf.uint8)

    def rgb_decoder():  # GIF (first frame) and BMP decode to RGB only, so does a CMYK JPEG
        rgb = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        gray = tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)

    image = tf.cond(tf.logical_or(fmt >= 3, through_rgb), rgb_decoder, gray_decoder)
    return tf.ensure_shape(image, [None, None, 1])


def _checked_face(data, max_pixels: int, through_rgb: bool):
    """One encoded aligned face -> (float32 `[48, 48, 1]` network input, error string); may raise (corrupt data)."""
    import tensorflow as tf

    from va2att.config import INPUT_SIZE
    from va2att.faces.network_input import aligned_input

    fmt = image_format(data)
    data, height, width, problem = tf.cond(
        tf.equal(fmt, 3), lambda: gif_first_frame(data), lambda: (data, *header_size(data, fmt), tf.constant("")))
    usable = tf.logical_and(height > 0, width > 0)
    small = height * width <= max_pixels
    error = tf.case(
        [(tf.equal(fmt, 0), lambda: tf.constant(ERRORS["format"])),
         (tf.equal(problem, "gif_blocks"), lambda: tf.constant(ERRORS["gif_blocks"])),
         (tf.equal(problem, "gif_frame"), lambda: tf.constant(ERRORS["gif_frame"])),
         (tf.logical_not(usable), lambda: tf.constant(ERRORS["size"])),
         (tf.logical_not(small), lambda: tf.strings.format("{}x{} pixels: " + ERRORS["too_large"], (width, height)))],
        default=lambda: tf.constant(""))
    face = tf.cond(tf.equal(error, ""),
                   lambda: aligned_input(tf.cast(_decode_gray(data, fmt, through_rgb), tf.float32)),
                   lambda: tf.zeros([INPUT_SIZE, INPUT_SIZE, 1], tf.float32))
    return face, error


def _each_alone(image_bytes, one):
    """`one(data) -> (face, error)` for each image, a failing one costing only itself.

    Returns (faces `[n, 48, 48, 1]`, errors `[n]`, decoded `[n]` bool) for the n images given; an
    image whose `one` raised has zeros, `ERRORS["corrupt"]` and decoded False."""
    import tensorflow as tf

    from va2att.config import INPUT_SIZE

    count = tf.shape(image_bytes)[0]
    results = tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
    results = results.map(lambda i, data: (i, *one(data))).ignore_errors()
    # One element that never fails, so the batch below always exists (it marks "failed" too).
    nothing = tf.data.Dataset.from_tensors(
        (tf.constant(-1), tf.zeros([INPUT_SIZE, INPUT_SIZE, 1], tf.float32), tf.constant(ERRORS["corrupt"])))
    rows, faces, errors = results.concatenate(nothing).batch(tf.cast(count, tf.int64) + 1).get_single_element()
    done = tf.shape(rows)[0] - 1  # rows[done] is the element that never fails
    where = tf.tensor_scatter_nd_update(tf.fill([count], done), rows[:done, None], tf.range(done))
    return tf.gather(faces, where), tf.gather(errors, where), tf.not_equal(where, done)


def checked_faces(image_bytes, max_pixels: int = MAX_PIXELS):
    """Encoded aligned faces, string `[N]` -> (float32 `[N, 48, 48, 1]` network inputs, string `[N]` errors).

    Each image's header is checked first; only images of a known format and at most `max_pixels`
    pixels are decoded (then as `va2att.faces.network_input.aligned_input` does). Refused images give zeros
    and a non-empty error; so do images that TensorFlow cannot decode, one by one.
    """
    import tensorflow as tf

    faces, errors, decoded = _each_alone(image_bytes, lambda data: _checked_face(data, max_pixels, tf.constant(False)))
    # A second try for what failed, decoding through RGB: libjpeg turns no CMYK JPEG into one channel.
    again = tf.where(tf.logical_not(decoded))
    retried, retry_errors, _ = _each_alone(
        tf.gather_nd(image_bytes, again), lambda data: _checked_face(data, max_pixels, tf.constant(True)))
    faces = tf.tensor_scatter_nd_update(faces, again, retried)
    errors = tf.tensor_scatter_nd_update(errors, again, retry_errors)
    return faces, errors
