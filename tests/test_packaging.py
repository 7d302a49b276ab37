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
    from va2att.model import losses, metrics, network  # noqa: F401 - they register the classes
    from va2att.model.layers import (  # noqa: F401
        EmotionGCN,
        FusedBatchNormalization,
        GraphConvolution,
        LevelAttention,
        PerImageStandardization,
        ResidualAttentionBlock,
        ResidualUnit,
    )

    names = ["CCC", "ConcordanceLoss", "EmotionGCN", "FusedBatchNormalization", "GraphConvolution", "LevelAttention",
             "MeanSquaredError", "PCC", "PerImageStandardization", "RMSE", "ResidualAttentionBlock", "ResidualUnit",
             "SAGR", "TukeyBiweight", "VA2AttModel"]
    for name in names:
        cls = keras.saving.get_registered_object(f"va2att>{name}")
        assert cls is not None and cls.__name__ == name, name
