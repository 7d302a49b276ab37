"""A procedural face whose features encode valence and arousal, with its 68 iBUG landmarks.

The face is built in face units (jaw width 1, origin between the eyes' level and the nose)
as 68 landmark points, deformed by the labels, placed in the image by a random similarity
transform, and drawn with OpenCV polygons through those same points, so the landmarks
written to the CSV are exactly where the drawn features are.

Label -> appearance (all visible at 48 x 48 gray after alignment):
- valence: mouth curvature (corners up for positive, down for negative), mouth width,
  brow slant (inner ends lowered for negative valence);
- arousal: eye opening, mouth opening (dark inner mouth), brow raise.
Identity, pose, skin/background tone, lighting gradient, blur and noise vary at random.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Expression prototypes on the valence/arousal circumplex (codes 0-7, AffectNet order).
PROTOTYPES = np.array(
    [
        [0.0, 0.0],  # 0 Neutral
        [0.8, 0.35],  # 1 Happy
        [-0.7, -0.4],  # 2 Sad
        [0.25, 0.85],  # 3 Surprise
        [-0.45, 0.85],  # 4 Fear
        [-0.75, 0.3],  # 5 Disgust
        [-0.65, 0.6],  # 6 Anger
        [-0.4, -0.05],  # 7 Contempt
    ]
)


def expression_for(valence: float, arousal: float) -> int:
    """Nearest prototype on the circumplex."""
    d = ((PROTOTYPES - np.array([valence, arousal])) ** 2).sum(1)
    return int(np.argmin(d))


def sample_labels(rng: np.random.Generator) -> tuple[float, float, int]:
    """Valence, arousal in [-1, 1] (clusters around prototypes plus a uniform share) and the code."""
    if rng.random() < 0.35:
        v, a = rng.uniform(-1, 1, 2)
    else:
        centre = PROTOTYPES[rng.integers(len(PROTOTYPES))]
        v, a = centre + rng.normal(0, 0.22, 2)
    v, a = float(np.clip(v, -1, 1)), float(np.clip(a, -1, 1))
    return round(v, 6), round(a, 6), expression_for(v, a)


def face_landmarks(valence: float, arousal: float, rng: np.random.Generator) -> np.ndarray:
    """68 x 2 landmarks in face units for the (noisy) labels and a random identity."""
    v = float(np.clip(valence + rng.normal(0, 0.08), -1, 1))
    a = float(np.clip(arousal + rng.normal(0, 0.08), -1, 1))
    eye_x = 0.22 + rng.normal(0, 0.012)
    eye_y = -0.10
    jaw_top, chin = -0.12 + rng.normal(0, 0.02), 0.62 + rng.normal(0, 0.03)
    half_w = 0.5 + rng.normal(0, 0.025)
    yaw = rng.normal(0, 0.025)  # features shifted sideways: a hint of head turn
    p = np.zeros((68, 2))
    # Jaw 0-16: image left, round the chin, image right.
    phi = np.linspace(0, np.pi, 17)
    p[0:17, 0] = -half_w * np.cos(phi)
    p[0:17, 1] = jaw_top + (chin - jaw_top) * np.sin(phi) ** 0.8
    # Brows 17-21 (image left, outer -> inner) and 22-26 (inner -> outer).
    raise_ = 0.07 * a + 0.015 * max(v, 0)
    slant = 0.055 * max(-v, 0) * (0.6 + 0.4 * max(a, 0)) - 0.02 * max(v, 0)
    brow_y = eye_y - 0.14 + rng.normal(0, 0.01) - raise_
    bw = 0.2 + rng.normal(0, 0.01)
    for side, idx in ((-1, range(17, 22)), (1, range(26, 21, -1))):
        t = np.linspace(0, 1, 5)  # 0 outer, 1 inner
        xs = side * (eye_x + bw / 2 - bw * t) + yaw
        ys = brow_y - 0.035 * np.sin(np.pi * t * 0.9) + slant * t**1.5
        p[list(idx), 0], p[list(idx), 1] = xs, ys
    # Eyes: 36 outer, 37-38 upper, 39 inner, 40-41 lower (image left); 42 inner .. 45 outer .. 47.
    ew = 0.09 + rng.normal(0, 0.005)
    open_ = max(0.006, 0.05 + 0.05 * a + rng.normal(0, 0.004))
    for cx, idx in ((-eye_x + yaw, [36, 37, 38, 39, 40, 41]), (eye_x + yaw, [45, 44, 43, 42, 47, 46])):
        pts = [
            (cx - ew, eye_y),
            (cx - ew / 3, eye_y - open_),
            (cx + ew / 3, eye_y - open_),
            (cx + ew, eye_y),
            (cx + ew / 3, eye_y + open_ * 0.8),
            (cx - ew / 3, eye_y + open_ * 0.8),
        ]
        p[idx] = pts
    # Nose 27-30 bridge, 31-35 base.
    nose_y = 0.16 + rng.normal(0, 0.01)
    p[27:31, 0] = yaw * 1.3
    p[27:31, 1] = np.linspace(eye_y + 0.02, nose_y, 4)
    p[31:36, 0] = np.linspace(-0.08, 0.08, 5) + yaw * 1.2
    p[31:36, 1] = nose_y + 0.03 - np.array([0, 0.01, 0.015, 0.01, 0])
    # Mouth: outer 48-59, inner 60-67. Curvature from valence, opening from arousal.
    my = 0.40 + rng.normal(0, 0.01)
    mw = 0.17 + 0.04 * v + rng.normal(0, 0.008)
    curv = 0.11 * v
    gap = max(0.0, 0.005 + 0.08 * (a + 1) / 2 + rng.normal(0, 0.005))
    lip = 0.03 + rng.normal(0, 0.003)
    mx = yaw * 1.2

    def base(t):
        return my - curv * t**2 + curv / 3

    up_t = np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1])
    lo_t = np.array([0.6, 0.25, 0, -0.25, -0.6])
    p[48:55, 0] = mx + mw * up_t
    p[48:55, 1] = base(up_t) - (gap / 2 + lip) * (1 - up_t**2) + 0.006 * np.abs(up_t)
    p[55:60, 0] = mx + mw * lo_t
    p[55:60, 1] = base(lo_t) + (gap / 2 + lip * 1.2) * (1 - lo_t**2)
    in_up = np.array([-0.85, -0.3, 0, 0.3, 0.85])
    in_lo = np.array([0.3, 0, -0.3])
    p[60:65, 0] = mx + mw * in_up
    p[60:65, 1] = base(in_up) - (gap / 2) * (1 - in_up**2)
    p[65:68, 0] = mx + mw * in_lo
    p[65:68, 1] = base(in_lo) + (gap / 2) * (1 - in_lo**2)
    return p


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a face in face units lands in the picture: its size, rotation and centre in pixels."""

    face_px: float  # jaw width in pixels
    width: int
    height: int
    rotation: np.ndarray  # 2 x 2, scale included
    centre: np.ndarray

    def to_img(self, q) -> np.ndarray:
        return np.asarray(q) @ self.rotation.T + self.centre

    def poly(self, q) -> np.ndarray:
        """Points for OpenCV's sub-pixel drawing (SHIFT bits of precision)."""
        return np.round(self.to_img(q) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


SHIFT = 4  # sub-pixel drawing precision (2^4)


def place(rng: np.random.Generator, px=(64, 150), height=(1.6, 2.4), aspect=(0.75, 1.35), min_width=1.6,
          angle_sd=10.0, margin=0.75) -> Placement:
    """A random picture size and face placement: face size `px`, picture height and minimum width in face
    widths, aspect ratio, rotation (degrees, normal) and the margin the face's centre keeps from the edges."""
    face_px = rng.uniform(*px)
    h = int(rng.integers(int(face_px * height[0]), int(face_px * height[1])))
    w = int(np.clip(h * rng.uniform(*aspect), face_px * min_width, None))
    angle = np.deg2rad(rng.normal(0, angle_sd))
    c, s = np.cos(angle) * face_px, np.sin(angle) * face_px
    margin = face_px * margin
    centre = np.array([rng.uniform(margin, max(margin + 1, w - margin)),
                       rng.uniform(margin, max(margin + 1, h - margin))])
    return Placement(face_px, w, h, np.array([[c, -s], [s, c]]), centre)


def draw_face(
    valence: float, arousal: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """A BGR uint8 image with one face; returns (image, landmarks (68, 2) in pixels, box xywh)."""
    lm_face = face_landmarks(valence, arousal, rng)
    at = place(rng)
    lm = at.to_img(lm_face)
    img, bg_tone = _background(at, rng)
    _draw_features(img, lm_face, at, bg_tone, rng)
    img = _camera(img, at, rng)
    # A detector-like square box around the landmarks (forehead included).
    lo, hi = lm.min(0), lm.max(0)
    side = float(max(hi - lo)) * 1.1
    cx, cy = (lo + hi) / 2 + np.array([0, -0.05 * side])
    box = (float(cx - side / 2), float(cy - side / 2), side, side)
    return img, lm, box


def _background(at: Placement, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Tone, gradient (a 2 x 2 image stretched), a few shapes; returns the image and its tone."""
    import cv2

    w, h = at.width, at.height
    bg_tone = rng.uniform(20, 235)
    corners = np.clip(bg_tone + rng.normal(0, 20, (2, 2, 1)) * rng.uniform(0.85, 1.15, 3), 0, 255)
    img = cv2.resize(corners.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        col = tuple(int(x) for x in rng.uniform(0, 255, 3))
        cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), int(rng.uniform(5, w / 4)), col, -1)
    return img, bg_tone


def _draw_features(img, lm_face, at: Placement, bg_tone: float, rng: np.random.Generator) -> None:
    """Hair, head, brows, eyes, nose and mouth, drawn through the landmarks."""
    import cv2

    poly, sh, aa = at.poly, SHIFT, cv2.LINE_AA
    skin = rng.uniform(110, 230)
    while abs(skin - bg_tone) < 40:
        skin = rng.uniform(110, 230)
    skin_col = tuple(float(skin * t) for t in rng.uniform(0.85, 1.1, 3))
    hair_col = tuple(float(x) for x in rng.uniform(10, 120) * rng.uniform(0.7, 1.1, 3))
    # Hair cap, then head outline: jaw + forehead arc.
    top = lm_face[0:17].copy()
    fore = np.stack([0.5 * np.cos(np.linspace(0, np.pi, 15)) * (top[16, 0] - top[0, 0]), np.zeros(15)], 1)
    fore[:, 1] = top[0, 1] - 0.55 * np.sin(np.linspace(0, np.pi, 15))
    if rng.random() < 0.8:
        hair = fore * np.array([1.08, 1.0]) + np.array([0, -0.05])
        cv2.fillPoly(img, [poly(np.vstack([hair, top[[0]] + [-0.04, 0.05], top[[16]] + [0.04, 0.05]]))], hair_col, aa, sh)
    cv2.fillPoly(img, [poly(np.vstack([top, fore]))], skin_col, aa, sh)
    dark = tuple(float(x) for x in np.array(skin_col) * rng.uniform(0.15, 0.35))
    lip_col = tuple(float(x) for x in np.array(skin_col) * rng.uniform(0.45, 0.65) * np.array([0.9, 0.9, 1.15]))
    scale = at.face_px / 1.0
    th = max(1, round(scale * 0.03))
    # Brows.
    cv2.polylines(img, [poly(lm_face[17:22])], False, dark, th + 1, aa, sh)
    cv2.polylines(img, [poly(lm_face[22:27])], False, dark, th + 1, aa, sh)
    # Eyes: white, iris, outline.
    white = tuple(float(x) for x in rng.uniform(200, 250) * np.ones(3))
    for idx in (slice(36, 42), slice(42, 48)):
        e = lm_face[idx]
        cv2.fillPoly(img, [poly(e)], white, aa, sh)
        ctr = at.to_img(e.mean(0, keepdims=True))[0]
        r = min(0.045, 0.9 * (e[5, 1] - e[1, 1]) / 2 + 0.004) * scale  # iris stays inside the lids
        cv2.circle(img, (int(ctr[0] * 16), int(ctr[1] * 16)), max(1, int(r * 16)), dark, -1, aa, sh)
        cv2.polylines(img, [poly(e)], True, dark, th, aa, sh)
    # Nose.
    cv2.polylines(img, [poly(lm_face[27:31])], False, tuple(x * 0.8 for x in skin_col), th, aa, sh)
    cv2.polylines(img, [poly(lm_face[31:36])], False, dark, th, aa, sh)
    # Mouth: lips, dark opening.
    cv2.fillPoly(img, [poly(lm_face[48:60])], lip_col, aa, sh)
    inner = lm_face[60:68]
    if np.abs(inner[[5, 6, 7], 1] - inner[[3, 2, 1], 1]).max() > 0.01:
        cv2.fillPoly(img, [poly(inner)], tuple(x * 0.25 for x in lip_col), aa, sh)
    cv2.polylines(img, [poly(lm_face[48:60])], True, dark, th, aa, sh)


def _camera(img, at: Placement, rng: np.random.Generator) -> np.ndarray:
    """Lighting across the face, blur, noise (float32 throughout)."""
    import cv2

    w, h = at.width, at.height
    ramp = np.float32(rng.normal(0, 0.5)) * (np.arange(w, dtype=np.float32) - np.float32(at.centre[0])) / np.float32(w)
    gain = (1 + ramp)[None, :, None] * np.float32(rng.uniform(0.7, 1.2))
    out = img.astype(np.float32) * gain + np.float32(rng.uniform(-20, 20))
    k = int(rng.choice([0, 0, 3, 5]))
    if k:
        out = cv2.GaussianBlur(out, (k, k), 0)
    out += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(2, 9))
    return np.clip(out, 0, 255).astype(np.uint8)
