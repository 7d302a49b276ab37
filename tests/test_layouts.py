"""A data set layout is one registered object: a layout defined here alone is detected, prepared and trained on."""

import hashlib
import json

import cv2
import numpy as np
import pytest
from conftest import TINY_MODEL

from va2att.config import FACE_SIZE, DataConfig, RunConfig, apply_overrides
from va2att.data import layouts
from va2att.data.layout import Layout, ListedRows
from va2att.data.records import FaceRecord

LIST_FILE = "toy-faces.json"


class ToyLayout(Layout):
    """Gray faces in `faces/`, listed with their labels in one JSON file: `{split: [[file, v, a, code], ...]}`."""

    name = "toy-faces"
    title = "toy faces"
    root_hint = LIST_FILE

    def is_root(self, path):
        return (path / LIST_FILE).is_file()

    def read_split(self, root, split, options):
        text = (root / LIST_FILE).read_text()
        rows = [tuple(row) for row in json.loads(text)[split]]
        return ListedRows(rows, total=len(rows), fingerprint=hashlib.sha1(text.encode()).hexdigest())

    def process_row(self, root, row, options, result):
        file, valence, arousal, code = row
        image = result.read_image(root / "faces", file, file)
        if image is not None:
            gray = cv2.cvtColor(np.ascontiguousarray(image.pixels), cv2.COLOR_RGB2GRAY)
            face = cv2.resize(gray, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
            result.records.append(FaceRecord(face.tobytes(), float(valence), float(arousal), int(code), file, "aligned"))


@pytest.fixture
def toy_layout():
    layout = layouts.register(ToyLayout())
    yield layout
    layouts.LAYOUTS.pop(layout.name)


def _toy_set(root, train=96, val=24, seed=0):
    """Faces whose brightness follows valence and contrast arousal; plus a missing file and a row that breaks."""
    rng = np.random.default_rng(seed)
    (root / "faces").mkdir(parents=True)
    listing = {}
    for split, n in (("training", train), ("validation", val)):
        rows = []
        for i in range(n):
            v, a = rng.uniform(-1, 1, 2)
            face = np.clip(128 + 60 * v + (30 + 25 * a) * rng.standard_normal((64, 64)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / "faces" / f"{split}-{i}.png"), face)
            rows.append([f"{split}-{i}.png", round(v, 3), round(a, 3), int(i % 8)])
        rows.append([f"{split}-missing.png", 0.0, 0.0, 0])
        rows.append([f"{split}-0.png", 0.0, 0.0, "not a code"])  # process_row raises on this row
        listing[split] = rows
    (root / LIST_FILE).write_text(json.dumps(listing))
    return root


def test_a_layout_registered_outside_the_package_is_detected_prepared_and_trained_on(toy_layout, tmp_path):
    from va2att.data.preparation import layout_of, load_report
    from va2att.data.source import resolve_data
    from va2att.training.trainer import start_run, train

    root = _toy_set(tmp_path / "toy")
    assert layouts.detect_layout(root) is toy_layout
    assert layouts.detect_layout(tmp_path) is None
    prepared = resolve_data(DataConfig(data=str(root), prepare_workers=1), cache_dir=tmp_path / "cache")
    assert prepared.name.startswith("toy-faces-")
    report = load_report(prepared)
    assert layout_of(report) is toy_layout
    for split, n in (("training", 96), ("validation", 24)):
        s = report["splits"][split]
        assert s["written"] == n and s["csv_rows"] == n + 2
        assert s["skipped"] == {"missing": 1, "row_failed": 1}  # one bad row costs that row
    cfg = apply_overrides(RunConfig(), [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
        f"data.data={root}", "data.batch_size=16", "data.shuffle_buffer=64", "train.epochs=1",
        "data.prepare_workers=1"])
    start_run(cfg, tmp_path / "run", ["test"])
    result = train(tmp_path / "run", cache_dir=tmp_path / "cache", verbose=0, log=lambda *a: None)
    assert result.epochs_done == 1 and np.isfinite(result.last_logs["loss"])
    assert np.isfinite(result.last_logs["val_valence_ccc"])


def test_a_name_in_use_is_refused(toy_layout):
    with pytest.raises(ValueError, match="already registered"):
        layouts.register(ToyLayout())
    with pytest.raises(ValueError, match="known layouts are"):
        layouts.get("no-such-layout")


def test_no_layout_branches_outside_the_registry():
    """The package never compares a layout's name: what differs between layouts is in their objects."""
    import re
    from pathlib import Path

    import va2att

    package = Path(va2att.__file__).parent
    pattern = re.compile(r"""layout(\.name)?\s*[!=]=\s*["']|["'](affectnet|affectnet-npy|affwild2)["']\s*[!=]=""")
    found = [f"{path.relative_to(package)}:{n}" for path in package.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
