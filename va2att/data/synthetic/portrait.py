"""A second procedural face, drawn differently from `face`, for checking that training generalises.

The demo set's faces (`face`) are one drawing; a recipe tuned on them could be tuned to
that drawing. This module draws another one, with its own geometry, label distribution and dirt,
written in the same AffectNet layout by `synthetic.generate(..., style="portrait")`:

- geometry: a tall elliptical head of random aspect, almond eyes as ellipses with pupils, eyes,
  nose and mouth at random heights; optional glasses, moustache and fringe;
- valence: the mouth drawn as a thick curved stroke (curvature and width), smile lines beside it,
  the lower eyelids raised for positive valence; arousal: eye and mouth opening, brow height;
- labels: half uniform on the disc, half around the circumplex prototypes; 4% of faces carry a
  label drawn at random (annotation outliers);
- dirt: cluttered backgrounds (lines, boxes, text), an occluding blob beside the face, stronger
  noise, motion blur, colour casts, larger in-plane rotation, landmarks written with jitter.
"""

from __future__ import annotations

import numpy as np

from va2att.data.synthetic.face import (
    PROTOTYPES,
    SHIFT,
    Placement,
    expression_for,
    place,
)

OUTLIER_SHARE = 0.04


def sample_labels(rng: np.random.Generator) -> tuple[float, float, int, float, float]:
    """Shown (valence, arousal), the annotated code, and the annotated (valence, arousal).

    The face is drawn from the first pair; the CSV gets the last pair, which is a random label for
    `OUTLIER_SHARE` of the faces. Returned as (v_shown, a_shown, code, v_label, a_label)."""
    if rng.random() < 0.5:
        radius, angle = np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        v, a = radius * np.cos(angle), radius * np.sin(angle)
    else:
        v, a = PROTOTYPES[rng.integers(len(PROTOTYPES))] + rng.normal(0, 0.3, 2)
    v, a = float(np.clip(v, -1, 1)), float(np.clip(a, -1, 1))
    lv, la = (rng.uniform(-1, 1, 2) if rng.random() < OUTLIER_SHARE else (v, a))
    lv, la = round(float(lv), 6), round(float(la), 6)
    return v, a, expression_for(lv, la), lv, la


def portrait_landmarks(valence: float, arousal: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """68 x 2 landmarks in face units (face width 1) and the drawing parameters."""
    v, a = valence, arousal
    aspect = rng.uniform(1.15, 1.45)
    half_w, half_h = 0.5, 0.5 * aspect
    eye_y = rng.uniform(-0.12, 0.0)
    eye_x = rng.uniform(0.17, 0.26)
    nose_y = eye_y + rng.uniform(0.22, 0.3)
    mouth_y = nose_y + rng.uniform(0.16, 0.24)
    p = np.zeros((68, 2))
    # Jaw 0-16 along the lower half of the head ellipse.
    centre_y = eye_y + 0.12
    phi = np.linspace(np.pi, 0, 17)
    p[0:17, 0] = half_w * np.cos(phi)
    p[0:17, 1] = centre_y + half_h * np.sin(phi)
    # Eyes: almond shapes; opening from arousal, lower lid raised by positive valence.
    ew = rng.uniform(0.07, 0.1)
    opening = max(0.008, 0.035 + 0.045 * a)
    lift = 0.5 * opening * max(v, 0.0)
    eyes = {}
    for side, idx in ((-1, [36, 37, 38, 39, 40, 41]), (1, [45, 44, 43, 42, 47, 46])):
        cx = side * eye_x
        p[idx] = [(cx - ew, eye_y), (cx - ew / 3, eye_y - opening), (cx + ew / 3, eye_y - opening),
                  (cx + ew, eye_y), (cx + ew / 3, eye_y + opening - lift), (cx - ew / 3, eye_y + opening - lift)]
        eyes[side] = (cx, ew, opening, lift)
    # Brows 17-26: straight-ish strokes, height from arousal, inner ends down for negative valence.
    brow_y = eye_y - 0.09 - 0.06 * a
    inner_drop = 0.07 * max(-v, 0.0)
    for side, idx in ((-1, range(17, 22)), (1, range(26, 21, -1))):
        t = np.linspace(0, 1, 5)
        p[list(idx), 0] = side * (eye_x + 0.11 - 0.2 * t)
        p[list(idx), 1] = brow_y + inner_drop * t - 0.015 * np.sin(np.pi * t)
    # Nose 27-35.
    p[27:31, 0] = 0.0
    p[27:31, 1] = np.linspace(eye_y + 0.03, nose_y, 4)
    p[31:36, 0] = np.linspace(-0.07, 0.07, 5)
    p[31:36, 1] = nose_y + 0.02 - np.array([0, 0.008, 0.012, 0.008, 0])
    # Mouth: a curved stroke; corners up for positive valence; opening from arousal.
    mw = 0.15 + 0.05 * v + rng.normal(0, 0.01)
    curv = 0.12 * v
    gap = max(0.0, 0.1 * (a + 0.6) / 1.6)

    def base(t):
        return mouth_y - curv * t**2 + curv / 2

    up_t = np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1])
    lo_t = np.array([0.6, 0.25, 0, -0.25, -0.6])
    p[48:55, 0], p[48:55, 1] = mw * up_t, base(up_t) - (gap / 2 + 0.012) * (1 - up_t**2)
    p[55:60, 0], p[55:60, 1] = mw * lo_t, base(lo_t) + (gap / 2 + 0.015) * (1 - lo_t**2)
    in_up, in_lo = np.array([-0.85, -0.3, 0, 0.3, 0.85]), np.array([0.3, 0, -0.3])
    p[60:65, 0], p[60:65, 1] = mw * in_up, base(in_up) - (gap / 2) * (1 - in_up**2)
    p[65:68, 0], p[65:68, 1] = mw * in_lo, base(in_lo) + (gap / 2) * (1 - in_lo**2)
    params = {"half_w": half_w, "half_h": half_h, "centre_y": centre_y, "eyes": eyes, "mouth_w": mw,
              "mouth_curv": curv, "gap": gap, "valence": v, "base": base}
    return p, params


def draw_portrait(
    valence: float, arousal: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """A BGR uint8 image with one portrait face; returns (image, jittered landmarks (68, 2) in pixels, box xywh)."""
    lm_face, prm = portrait_landmarks(valence, arousal, rng)
    at = place(rng, px=(50, 160), height=(1.9, 2.8), aspect=(0.7, 1.4), min_width=1.8, angle_sd=14, margin=0.9)
    img = _clutter(at, rng)
    skin = rng.uniform(90, 240) * rng.uniform(0.8, 1.15, 3)
    dark = skin * rng.uniform(0.1, 0.3)
    _draw_head(img, lm_face, prm, at, skin, dark, rng)
    _draw_mouth(img, lm_face, prm, at, skin, dark, rng)
    img = _camera(img, at, rng)
    lm = at.to_img(lm_face) + rng.normal(0, 0.012 * at.face_px, (68, 2))  # annotation jitter
    lo, hi = lm.min(0), lm.max(0)
    side_px = float(max(hi - lo)) * 1.15
    cx, cy = (lo + hi) / 2
    return img, lm, (float(cx - side_px / 2), float(cy - side_px / 2), side_px, side_px)


def _col(x) -> tuple:
    return tuple(float(v) for v in np.clip(x, 0, 255))


def _clutter(at: Placement, rng: np.random.Generator) -> np.ndarray:
    """A flat background with lines, boxes and text on it."""
    import cv2

    w, h = at.width, at.height
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.uniform(0, 255, 3).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):
        kind = rng.integers(3)
        c1 = _col(rng.uniform(0, 255, 3))
        p1, p2 = (int(rng.uniform(0, w)), int(rng.uniform(0, h))), (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        if kind == 0:
            cv2.line(img, p1, p2, c1, int(rng.integers(1, 6)), cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, p1, p2, c1, -1 if rng.random() < 0.5 else 2)
        else:
            cv2.putText(img, "".join(rng.choice(list("ABCDEFGHKMNPRSTWXYZ0123456789"), 4)), p1,
                        cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.4, 1.5), c1, 2, cv2.LINE_AA)
    return img


def _draw_head(img, lm_face, prm, at: Placement, skin, dark, rng: np.random.Generator) -> None:
    """Head ellipse (a polygon, so that it follows the rotation), neck, optional fringe, eyes, brows, glasses
    and nose."""
    import cv2

    pts, sh, aa = at.poly, SHIFT, cv2.LINE_AA
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    head = np.stack([prm["half_w"] * np.cos(t), prm["centre_y"] + prm["half_h"] * np.sin(t)], 1)
    neck = np.array([[-0.2, prm["centre_y"] + 0.3], [0.2, prm["centre_y"] + 0.3], [0.25, 1.6], [-0.25, 1.6]])
    cv2.fillPoly(img, [pts(neck)], _col(skin * 0.85), aa, sh)
    cv2.fillPoly(img, [pts(head)], _col(skin), aa, sh)
    if rng.random() < 0.6:
        top = head[(head[:, 1] < prm["centre_y"] - prm["half_h"] * 0.55)]
        fringe = np.vstack([top * 1.04, [[0.45, prm["centre_y"] - prm["half_h"] * 0.5],
                                          [-0.45, prm["centre_y"] - prm["half_h"] * 0.5]]])
        cv2.fillPoly(img, [pts(fringe)], _col(rng.uniform(10, 140) * np.ones(3)), aa, sh)
    th = max(1, round(at.face_px * 0.025))
    # Eyes: white almond, pupil, lids.
    for side, idx in ((-1, slice(36, 42)), (1, slice(42, 48))):
        eye = lm_face[idx]
        cv2.fillPoly(img, [pts(eye)], _col(np.full(3, rng.uniform(190, 250))), aa, sh)
        cx, ew, opening, _ = prm["eyes"][side]
        ctr = at.to_img([[cx, eye[:, 1].mean()]])[0]
        r = max(1.0, min(opening, ew) * 0.8 * at.face_px)
        cv2.circle(img, (int(ctr[0] * 16), int(ctr[1] * 16)), int(r * 16), _col(dark), -1, aa, sh)
        cv2.polylines(img, [pts(eye)], True, _col(dark), th, aa, sh)
    cv2.polylines(img, [pts(lm_face[17:22])], False, _col(dark), th + 2, aa, sh)
    cv2.polylines(img, [pts(lm_face[22:27])], False, _col(dark), th + 2, aa, sh)
    if rng.random() < 0.25:  # glasses
        for side in (-1, 1):
            cx, ew, _, _ = prm["eyes"][side]
            ring = np.stack([cx + ew * 1.5 * np.cos(t), lm_face[36, 1] + ew * 1.1 * np.sin(t)], 1)
            cv2.polylines(img, [pts(ring)], True, _col(rng.uniform(0, 80, 3)), th, aa, sh)
    cv2.polylines(img, [pts(lm_face[31:36])], False, _col(skin * 0.6), th, aa, sh)  # nose


def _draw_mouth(img, lm_face, prm, at: Placement, skin, dark, rng: np.random.Generator) -> None:
    """Dark opening, then the lips as a thick stroke; smile lines for positive valence; an optional
    moustache and an occluding blob at the side of the face (a hand, a shoulder)."""
    import cv2

    pts, sh, aa = at.poly, SHIFT, cv2.LINE_AA
    th = max(1, round(at.face_px * 0.025))
    inner = lm_face[60:68]
    if prm["gap"] > 0.01:
        cv2.fillPoly(img, [pts(inner)], _col(dark * 0.7), aa, sh)
    lip = _col(dark * np.array([1.6, 1.4, 2.4]) + 20)
    cv2.polylines(img, [pts(lm_face[48:55])], False, lip, th + 2, aa, sh)
    cv2.polylines(img, [pts(np.vstack([lm_face[54:60], lm_face[[48]]]))], False, lip, th + 2, aa, sh)
    if prm["valence"] > 0.3:
        for side in (-1, 1):
            x0 = side * (prm["mouth_w"] + 0.04)
            y0 = prm["base"](1.0)
            line = np.array([[x0, y0 - 0.12], [x0 + side * 0.03, y0 - 0.04], [x0 + side * 0.01, y0 + 0.04]])
            cv2.polylines(img, [pts(line)], False, _col(skin * 0.7), max(1, th - 1), aa, sh)
    if rng.random() < 0.15:  # moustache
        y0 = prm["base"](0.0) - prm["gap"] / 2 - 0.04
        cv2.polylines(img, [pts(np.array([[-0.12, y0 + 0.02], [0, y0], [0.12, y0 + 0.02]]))], False,
                      _col(dark), th + 3, aa, sh)
    if rng.random() < 0.3:  # an occluding blob at the side of the face
        side = rng.choice([-1, 1])
        blob = np.array([side * rng.uniform(0.45, 0.6), rng.uniform(0.0, 0.6)])
        ctr = at.to_img(blob[None])[0]
        cv2.ellipse(img, (int(ctr[0]), int(ctr[1])), (int(at.face_px * 0.25), int(at.face_px * 0.4)),
                    float(rng.uniform(0, 180)), 0, 360, _col(rng.uniform(0, 255, 3)), -1, aa)


def _camera(img, at: Placement, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, brightness, optional motion blur and noise."""
    import cv2

    out = img.astype(np.float32) * rng.uniform(0.8, 1.2, 3).astype(np.float32) + np.float32(rng.uniform(-25, 25))
    if rng.random() < 0.3:  # motion blur
        k = int(rng.choice([3, 5, 7]))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        out = cv2.filter2D(out, -1, cv2.warpAffine(kernel, cv2.getRotationMatrix2D((k / 2, k / 2),
                                                                                    float(rng.uniform(0, 180)), 1), (k, k)))
    out += rng.standard_normal((at.height, at.width, 3), dtype=np.float32) * np.float32(rng.uniform(4, 14))
    return np.clip(out, 0, 255).astype(np.uint8)
