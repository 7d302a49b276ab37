"""A drawn set that needs each component of 2Att-2Mt: the set the paper's tables are run on.

On the demo set every row of the paper's Tables 1-5 scores within the seeds' spread: its faces fill the
crop, its labels are clean and its pixels give valence and arousal directly, so attention, the
two-stage head and Tukey's loss have nothing to do. This drawing (the portrait drawing's faces,
`portrait`) gives each of them something, and says which property is for which:

- **label noise with real outliers, for the robust loss** (Table 5): `NOISE_SHARE` of the *training*
  faces carry a valence/arousal label that is not the face's: half a random pair drawn uniformly on
  [-1, 1]^2 (`random`), half the face's own pair swapped (`swapped`: valence written as arousal and the
  reverse). Validation labels are clean, so a loss that follows the outliers scores worse there. The
  expression code stays the face's own (in AffectNet the category and the two values are annotated
  separately).
- **the evidence in small regions among clutter, at varying position and scale, for attention**
  (Tables 1 and 2): the landmarks written to the CSV are the face's own scaled by `CROP_SCALE` about a
  point shifted by up to `CROP_SHIFT` face widths, so the aligned 48x48 crop holds the face at 1/1.6 to
  1/1.0 of its size, anywhere in it, with the cluttered background (lines, boxes, text, face-like
  distractor strokes) around it. The cues that carry the labels (mouth, lids, brows, the marks below)
  are a few pixels of that crop.
- **expression classes that carry what the pixels give only weakly, for the two-stage head**
  (Tables 1 and 3): most faces sit close to their class's circumplex prototype (`PROTOTYPE_SHARE`,
  spread `PROTOTYPE_SD`), and each class is drawn with its own small, faint action-unit mark (`MARKS`:
  cheeks raised, a tear, forehead lines, brows drawn together, a wrinkled nose, one mouth corner
  pulled). The continuous cues of the portrait drawing (mouth curve, eye opening, brow height) are
  drawn from the pair plus `CUE_NOISE`, so on their own they give valence and arousal only roughly;
  the class mark says which prototype the face is near, and the clean codes teach the network to read
  it sooner than the noisy pairs do.

Label noise and clutter are sized so that every row learns in the paper's 10 epochs (measured in
docs/reproducing.md). Written in the AffectNet layout by `synthetic.generate(..., style="components")`
and generated on first use by `--data demo-components`.
"""

from __future__ import annotations

import numpy as np

from va2att.data.synthetic.face import PROTOTYPES, SHIFT, expression_for, place
from va2att.data.synthetic.portrait import (
    _camera,
    _clutter,
    _col,
    _draw_head,
    _draw_mouth,
    portrait_landmarks,
)

VERSION = 1  # bump when the drawing or the labels change, so cached demo-components sets are generated anew
NOISE_SHARE = 0.2  # training faces whose valence/arousal label is not theirs (half random, half swapped)
PROTOTYPE_SHARE = 0.8  # faces drawn around their class's prototype; the rest uniform on the disc
PROTOTYPE_SD = 0.12  # spread around a prototype, per coordinate
CUE_NOISE = 0.15  # sd of the error with which the continuous cues show valence and arousal
CROP_SCALE = (1.0, 1.6)  # written landmarks scaled by this about a shifted point: the face's share of the crop
CROP_SHIFT = 0.4  # the shift of that point, in face widths, at most (per axis, at the largest scale)
NOISE_KINDS = ("clean", "random", "swapped")


def sample_labels(rng: np.random.Generator, training: bool) -> tuple[float, float, int, float, float, str]:
    """The face's (valence, arousal), its expression code, the written (valence, arousal) and the noise kind.

    The code is the nearest prototype of the face's own pair; the written pair is the face's own, or
    for `NOISE_SHARE` of the training faces a random or swapped one."""
    if rng.random() < PROTOTYPE_SHARE:
        v, a = PROTOTYPES[rng.integers(len(PROTOTYPES))] + rng.normal(0, PROTOTYPE_SD, 2)
    else:
        radius, angle = np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        v, a = radius * np.cos(angle), radius * np.sin(angle)
    v, a = round(float(np.clip(v, -1, 1)), 6), round(float(np.clip(a, -1, 1)), 6)
    code = expression_for(v, a)
    kind = "clean"
    if training and rng.random() < NOISE_SHARE:
        kind = "random" if rng.random() < 0.5 else "swapped"
    if kind == "random":
        lv, la = (round(float(x), 6) for x in rng.uniform(-1, 1, 2))
    elif kind == "swapped":
        lv, la = a, v
    else:
        lv, la = v, a
    return v, a, code, lv, la, kind


def draw_components(
    valence: float, arousal: float, code: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """A BGR uint8 image of one face; returns (image, written landmarks (68, 2) in pixels, box xywh).

    The written landmarks and box frame a region `CROP_SCALE` times the face, shifted: the crop
    preparation aligns from them holds the face small and off-centre among clutter."""
    cue_v = float(np.clip(valence + rng.normal(0, CUE_NOISE), -1, 1))
    cue_a = float(np.clip(arousal + rng.normal(0, CUE_NOISE), -1, 1))
    lm_face, prm = portrait_landmarks(cue_v, cue_a, rng)
    at = place(rng, px=(40, 110), height=(2.6, 3.4), aspect=(0.8, 1.3), min_width=2.6, angle_sd=12, margin=1.3)
    img = _clutter(at, rng)
    _distractors(img, at, rng)
    skin = rng.uniform(90, 240) * rng.uniform(0.8, 1.15, 3)
    dark = skin * rng.uniform(0.1, 0.3)
    _draw_head(img, lm_face, prm, at, skin, dark, rng)
    _draw_mouth(img, lm_face, prm, at, skin, dark, rng)
    _mark(img, code, lm_face, prm, at, skin, rng)
    img = _camera(img, at, rng)
    written = at.to_img(frame(lm_face, rng)) + rng.normal(0, 0.012 * at.face_px, (68, 2))
    lo, hi = written.min(0), written.max(0)
    side_px = float(max(hi - lo)) * 1.15
    cx, cy = (lo + hi) / 2
    return img, written, (float(cx - side_px / 2), float(cy - side_px / 2), side_px, side_px)


def frame(lm_face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The landmarks to write, in face units: the face's own scaled by a draw from `CROP_SCALE` about
    their centre and shifted by up to `CROP_SHIFT` face widths (less for the smaller scales, so that the
    face stays in the crop). The crop aligned from them shows the face at 1/scale of its size, off centre."""
    scale = rng.uniform(*CROP_SCALE)
    centre = lm_face.mean(0)
    shift = rng.uniform(-1, 1, 2) * CROP_SHIFT * (0.2 + 0.8 * (scale - 1) / (CROP_SCALE[1] - 1))
    return centre + (lm_face - centre) * scale + shift


def _distractors(img, at, rng: np.random.Generator) -> None:
    """Face-like strokes near the face (curves like mouths, ellipses like eyes), so that a curved dark
    stroke in the crop is not evidence by itself."""
    import cv2

    for _ in range(int(rng.integers(3, 8))):
        centre = at.centre + rng.normal(0, 1.0, 2) * at.face_px
        half = at.face_px * rng.uniform(0.08, 0.3)
        colour = _col(rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            t = np.linspace(-1, 1, 9)
            curve = np.stack([centre[0] + half * t, centre[1] + rng.uniform(-0.6, 0.6) * half * (t**2 - 0.5)], 1)
            cv2.polylines(img, [np.round(curve).astype(np.int32).reshape(-1, 1, 2)], False, colour,
                          int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            cv2.ellipse(img, (int(centre[0]), int(centre[1])), (int(half), int(half * rng.uniform(0.3, 0.7))),
                        float(rng.uniform(0, 180)), 0, 360, colour, int(rng.choice([-1, 1, 2])), cv2.LINE_AA)


def _strokes(code: int, lm_face: np.ndarray, prm: dict) -> list[np.ndarray]:
    """The class's action-unit mark as polylines in face units (none for Neutral)."""
    brow_y = lm_face[17:27, 1].mean()
    eye_y = lm_face[36:48, 1].mean()
    nose_y = lm_face[33, 1]
    mouth_w = prm["mouth_w"]
    corner_y = prm["base"](1.0)
    if code == 1:  # Happy: cheeks raised (an arc under each eye)
        t = np.linspace(-1, 1, 7)
        return [np.stack([s * 0.24 + 0.07 * t, eye_y + 0.11 - 0.025 * (1 - t**2)], 1) for s in (-1, 1)]
    if code == 2:  # Sad: a tear under one eye
        return [np.array([[-0.2, eye_y + 0.06], [-0.205, eye_y + 0.12], [-0.2, eye_y + 0.15]])]
    if code == 3:  # Surprise: three forehead lines
        return [np.array([[-0.16, y], [0.0, y - 0.01], [0.16, y]]) for y in brow_y - np.array([0.06, 0.1, 0.14])]
    if code == 4:  # Fear: forehead lines and brows drawn up in the middle
        return [np.array([[-0.12, brow_y - 0.07], [0.12, brow_y - 0.07]]),
                np.array([[-0.09, brow_y - 0.02], [0.0, brow_y - 0.05], [0.09, brow_y - 0.02]])]
    if code == 5:  # Disgust: a wrinkled nose
        return [np.array([[s * 0.03, nose_y - 0.1], [s * 0.08, nose_y - 0.06]]) for s in (-1, 1)] + \
               [np.array([[s * 0.035, nose_y - 0.06], [s * 0.085, nose_y - 0.02]]) for s in (-1, 1)]
    if code == 6:  # Anger: two vertical furrows between the brows
        return [np.array([[s * 0.025, brow_y - 0.04], [s * 0.02, brow_y + 0.05]]) for s in (-1, 1)]
    if code == 7:  # Contempt: one mouth corner pulled up
        return [np.array([[mouth_w, corner_y], [mouth_w + 0.05, corner_y - 0.04], [mouth_w + 0.06, corner_y - 0.08]])]
    return []


MARKS = {code: name for code, name in enumerate(
    ("none", "cheeks raised", "a tear", "forehead lines", "brows drawn up", "a wrinkled nose", "furrowed brows",
     "one mouth corner up"))}


def _mark(img, code: int, lm_face, prm, at, skin, rng: np.random.Generator) -> None:
    """Draw the class's mark, darker than the skin but fainter than the features' outlines."""
    import cv2

    colour = _col(skin * rng.uniform(0.35, 0.55))
    th = max(1, round(at.face_px * 0.05))
    for stroke in _strokes(code, lm_face, prm):
        cv2.polylines(img, [at.poly(stroke)], False, colour, th, cv2.LINE_AA, SHIFT)
