"""Packaging: the package imports from anywhere, the tools name themselves, argument checks load no TensorFlow."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO


def run_python(*args, cwd=REPO, timeout=120):
    env = dict(os.environ, PYTHONPATH="")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_package_imports_from_the_folder_that_holds_the_clone(tmp_path):
    """A folder named like the package (the clone itself) in the working directory must not shadow it."""
    try:
        importlib.metadata.distribution("va2att")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("va2att is not installed (pip install -e .)")
    (tmp_path / "va2att").symlink_to(REPO, target_is_directory=True)
    proc = run_python("-c", "import va2att; from va2att import Predictor; print(va2att.__file__)", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(os.path.join("va2att", "__init__.py"))


@pytest.mark.parametrize(("args", "usage"), [
    (["train.py", "--help"], "usage: train.py"),
    (["evaluate.py", "--help"], "usage: evaluate.py"),
    (["-m", "va2att.cli.train", "--help"], "usage: python -m va2att.cli.train"),
    (["-m", "va2att.data.prepare", "--help"], "usage: python -m va2att.data.prepare"),
    (["-m", "va2att.data.synthetic", "--help"], "usage: python -m va2att.data.synthetic"),
    (["-m", "va2att.experiments", "--help"], "usage: python -m va2att.experiments"),
    (["-m", "va2att.serving.client", "--help"], "usage: python -m va2att.serving.client"),
    (["-m", "va2att.cli.flops", "--help"], "usage: python -m va2att.cli.flops"),
    (["-m", "va2att.predict", "--help"], "usage: python -m va2att.predict"),
])
def test_usage_lines_name_the_program_that_was_run(args, usage):
    proc = run_python(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(usage), proc.stdout[:200]


def test_console_scripts_name_themselves():
    bin_dir = os.path.dirname(sys.executable)
    script = os.path.join(bin_dir, "va2att-prepare")
    if not os.path.isfile(script):
        pytest.skip("console scripts are not installed next to this Python")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.startswith("usage: va2att-prepare"), proc.stdout[:200]


def test_evaluate_help_documents_every_flag():
    text = run_python("evaluate.py", "--help").stdout
    options = text.split("options:")[1]
    for flag in ("--model", "--data", "--split", "--json", "--out", "--classes", "--batch-size", "--cache-dir"):
        line = next(line for line in options.splitlines() if line.strip().startswith(flag))
        described = line.split(flag, 1)[1].strip() or options.split(line, 1)[1].splitlines()[0].strip()
        assert described and not described.startswith("--"), f"{flag} has no help text"


def test_predict_checks_inputs_and_model_before_loading_tensorflow(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from va2att.cli.predict import main
        missing_input = main([{str(tmp_path / 'nope.jpg')!r}, "--model", {str(tmp_path)!r}])
        (open({str(tmp_path / 'a.jpg')!r}, "wb")).close()
        missing_model = main([{str(tmp_path / 'a.jpg')!r}, "--model", {str(tmp_path / 'no-model')!r}])
        print(missing_input, missing_model, "tensorflow" in sys.modules)
    """)
    proc = run_python("-c", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "2", "False"]
    assert "nope.jpg" in proc.stderr and "no-model" in proc.stderr



def test_the_public_names_and_the_keras_names_that_saved_files_hold_are_where_they_were():
    """`from va2att import ...` names resolve, and every Keras class is registered under the name a `.keras` file
    written by an earlier version holds (`va2att>ClassName`), whichever module defines it now."""
    import keras

    import va2att

    for name in va2att.__all__:
        assert getattr(va2att, name) is not None, name
    from va2att.model import layers, losses, metrics, network  # noqa: F401 - they register the classes

    names = ["CCC", "ConcordanceLoss", "EmotionGCN", "FusedBatchNormalization", "GraphConvolution", "LevelAttention",
             "MeanSquaredError", "PCC", "PerImageStandardization", "RMSE", "ResidualAttentionBlock", "ResidualUnit",
             "SAGR", "TukeyBiweight", "VA2AttModel"]
    for name in names:
        cls = keras.saving.get_registered_object(f"va2att>{name}")
        assert cls is not None and cls.__name__ == name, name


def test_files_written_before_the_package_had_folders_still_load(tmp_path):
    """tests/data holds the config of a `.keras` file and a run's config.json written by va2att 0.1.0 with the flat
    package (module `va2att.model`, registered names `va2att>...`): they load as they did."""
    import json
    import zipfile

    import numpy as np

    from va2att import load_keras_model
    from va2att.config import RunConfig
    from va2att.model import build_model
    from va2att.run_dir import load_run_config

    data = REPO / "tests" / "data"
    old = json.loads((data / "keras-config-0.1.0.json").read_text())
    assert old["module"] == "va2att.model" and old["registered_name"] == "va2att>VA2AttModel"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((data / "run-config-0.1.0.json").read_text())
    cfg = load_run_config(run)
    assert isinstance(cfg, RunConfig) and cfg.model.width == 8
    # The old file's config with weights of the same network: what an old .keras file holds.
    model = build_model(cfg.model)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as written:
        for item in new.namelist():
            written.writestr(item, (data / "keras-config-0.1.0.json").read_bytes() if item == "config.json"
                             else new.read(item))
    loaded = load_keras_model(tmp_path / "old.keras")
    assert type(loaded).__name__ == "VA2AttModel" and loaded.model_config == cfg.model
    image = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    expected, found = model(image), loaded(image)
    for name in expected:
        np.testing.assert_allclose(np.asarray(found[name]), np.asarray(expected[name]), atol=1e-6)
