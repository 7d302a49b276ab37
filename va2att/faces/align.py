"""Face alignment: five points (or a face box) -> a 56 x 56 grayscale face on a fixed template.

Left/right are IMAGE left/right throughout, as in the iBUG 68-point scheme: point 36
(subject's right eye) is on the image left and becomes `TEMPLATE_5[0]`. The MTCNN
detector is mapped onto the same convention (its "left_eye" is the image-left eye,
checked on skimage.data.astronaut() in tests/test_align.py).

`align_any` is the one path shared by preparation and prediction: landmarks when usable,
else the face box, else MTCNN.
"""

from __future__ import annotations

import numpy as np

from va2att.config import FACE_SIZE
from va2att.faces.detection import Detection, FaceDetector, box_iou
from va2att.faces.images import ImageError, RGBImage

# (x, y) on the FACE_SIZE x FACE_SIZE canvas: image-left eye, image-right eye, nose tip,
# image-left mouth corner, image-right mouth corner. Eye distance 18 px; the 48 x 48
# centre crop keeps brows to chin.
TEMPLATE_5 = np.array(
    [[19.0, 22.0], [37.0, 22.0], [28.0, 32.5], [20.5, 42.5], [35.5, 42.5]], dtype=np.float64
)
# Where a face box (x, y, w, h) goes on the canvas: its centre and its mean side, in pixels.
BOX_CENTRE = (28.0, 32.0)
BOX_SIDE = 46.0
MIN_EYE_DISTANCE = 2.0  # in original pixels; below this five points are unusable

# iBUG-68 indices: image-left eye, image-right eye, nose tip, mouth corners.
LEFT_EYE_68 = tuple(range(36, 42))
RIGHT_EYE_68 = tuple(range(42, 48))
NOSE_TIP_68 = 30
MOUTH_LEFT_68 = 48
MOUTH_RIGHT_68 = 54


def five_points_from_68(lm68) -> np.ndarray:
    """(68, 2) or (136,) iBUG landmarks (x0, y0, x1, y1, ...) -> (5, 2) points in template order."""
    p = np.asarray(lm68, dtype=np.float64)
    if p.shape == (136,):
        p = p.reshape(68, 2)
    if p.shape != (68, 2):
        raise ValueError(f"Expected 68 landmarks as (68, 2) or (136,). Received: shape={p.shape}")
    return np.stack(
        [
            p[list(LEFT_EYE_68)].mean(axis=0),
            p[list(RIGHT_EYE_68)].mean(axis=0),
            p[NOSE_TIP_68],
            p[MOUTH_LEFT_68],
            p[MOUTH_RIGHT_68],
        ]
    )


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src -> dst.

    Closed-form Umeyama (1991). Returns the 2 x 3 matrix M with dst ~ M @ [x, y, 1].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    r = u @ np.diag(sign) @ vt
    c = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = c * r
    m[:, 2] = mu_d - c * r @ mu_s
    return m


def usable_points(points5, image: RGBImage | None = None) -> bool:
    """Finite points, eyes apart, and not far outside the image."""
    p = np.asarray(points5, np.float64)
    if p.shape != (5, 2) or not np.all(np.isfinite(p)):
        return False
    if np.linalg.norm(p[1] - p[0]) < MIN_EYE_DISTANCE:
        return False
    if image is not None:
        h, w = image.original_size
        if np.any(p < -0.5 * np.array([w, h])) or np.any(p > 1.5 * np.array([w, h])):
            return False
    return True


def warp_to_canvas(image: RGBImage, m_orig: np.ndarray, size: int) -> np.ndarray:
    """Warp with M (original coords -> canvas) into a size x size uint8 grayscale face.

    Only the region the canvas covers is cut out; when it shrinks by more than 2x it is
    first reduced with area interpolation, so the small face is not aliased.
    """
    import cv2

    m = np.asarray(m_orig, np.float64).copy()
    m[:, :2] = m[:, :2] / image.scale  # pixel coords -> canvas
    a = m[:, :2]
    inv = np.linalg.inv(a)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    src = (corners - m[:, 2]) @ inv.T
    h, w = image.height, image.width
    x0 = int(np.clip(np.floor(src[:, 0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(src[:, 1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + 3, x0 + 1, w))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + 3, y0 + 1, h))
    roi = np.asarray(image.pixels[y0:y1, x0:x1])
    m[:, 2] += a @ np.array([x0, y0], np.float64)
    zoom = float(np.sqrt(abs(np.linalg.det(a))))
    if zoom < 0.5:
        f = min(1.0, zoom * 1.5)
        rw, rh = max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))
        fx, fy = rw / roi.shape[1], rh / roi.shape[0]
        roi = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
        m[:, 0] /= fx
        m[:, 1] /= fy
    gray = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _check_image(image) -> None:
    if not isinstance(image, RGBImage):
        raise TypeError(
            "Alignment takes an RGBImage (from read_image or from_array(..., order=...)). "
            f"Received: {type(image).__name__}"
        )


def align_face(image: RGBImage, points5, size: int = FACE_SIZE) -> np.ndarray:
    """Similarity-align five points (original coordinates) onto TEMPLATE_5; uint8 (size, size) gray."""
    _check_image(image)
    p = np.asarray(points5, np.float64)
    if p.shape != (5, 2) or not np.all(np.isfinite(p)):
        raise ValueError(f"points5 must be a finite (5, 2) array. Received: shape={p.shape}")
    m = similarity_transform(p, TEMPLATE_5 * (size / FACE_SIZE))
    return warp_to_canvas(image, m, size)


def usable_box(box_xywh, image: RGBImage | None = None) -> bool:
    b = np.asarray(box_xywh, np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] < 4 or b[3] < 4:
        return False
    if image is not None:
        h, w = image.original_size
        if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
            return False
    return True


def align_box(image: RGBImage, box_xywh, size: int = FACE_SIZE) -> np.ndarray:
    """Fallback without landmarks: box centre -> BOX_CENTRE, mean box side -> BOX_SIDE, no rotation."""
    _check_image(image)
    if not usable_box(box_xywh):
        raise ValueError(f"box must be finite (x, y, w, h) with w, h >= 4. Received: box={box_xywh}")
    x, y, w, h = (float(v) for v in box_xywh)
    k = size / FACE_SIZE
    s = BOX_SIDE * k / ((w + h) / 2)
    m = np.array([[s, 0, BOX_CENTRE[0] * k - s * (x + w / 2)], [0, s, BOX_CENTRE[1] * k - s * (y + h / 2)]])
    return warp_to_canvas(image, m, size)


def align_detection(image: RGBImage, detection: Detection, size: int = FACE_SIZE) -> np.ndarray:
    """Align a FaceDetector result: its five points when usable, else its box."""
    if usable_points(detection.points5):
        return align_face(image, detection.points5, size)
    return align_box(image, detection.box, size)


def align_any(
    image: RGBImage,
    *,
    landmarks68=None,
    box=None,
    detector: FaceDetector | None = None,
    size: int = FACE_SIZE,
) -> tuple[np.ndarray, str]:
    """The shared alignment path: returns (face uint8 (size, size), method).

    method is "landmarks", "box" or "mtcnn". Landmarks are used when they are a usable
    (68, 2) array; else a usable box; else the detector (the face nearest the box, if one
    was given, else the most confident). Raises ImageError("no_face") when all fail.
    """
    _check_image(image)
    if landmarks68 is not None:
        pts = five_points_from_68(landmarks68)
        if usable_points(pts, image):
            return align_face(image, pts, size), "landmarks"
    if box is not None and usable_box(box, image):
        return align_box(image, box, size), "box"
    if detector is None:
        raise ImageError("no_face", "no usable landmarks or box and no detector")
    found = detector.detect(image)
    if not found:
        raise ImageError("no_face", "MTCNN found no face")
    best = found[0]
    if box is not None and np.all(np.isfinite(np.asarray(box, np.float64))):
        best = max(found, key=lambda d: (box_iou(d.box, box), d.confidence))
    return align_detection(image, best, size), "mtcnn"
