"""Smoke tests of the benchmark scripts: each runs with --quick and writes its JSON report.

The scripts run in this process (their `main(argv)`), which saves a TensorFlow start-up per script;
the figures themselves are meaningless at these sizes and are not checked, only the report's shape.
"""

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

BENCHMARKS = REPO / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

SYSTEM_KEYS = {"cpu_model", "cpu_count", "usable_cores", "tensorflow", "keras", "onednn", "gpus",
               "intra_op_threads", "inter_op_threads", "load_average"}


def _run(module_name, tmp_path, *argv):
    import importlib

    module = importlib.import_module(module_name)
    out = tmp_path / f"{module_name}.json"
    assert module.main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert SYSTEM_KEYS <= set(report["system"])
    assert report["matmul_peak"]["gflops"] > 0
    return report


def test_common_table_and_times():
    import common

    table = common.format_table(["a", "b"], [["x", 1.5], ["longer", None]])
    lines = table.splitlines()
    assert lines[0].startswith("| a ") and lines[1].endswith(":|") and len({len(line) for line in lines}) == 1
    summary = common.summarize_times([0.003, 0.001, 0.002])
    assert summary["calls"] == 3 and summary["median_ms"] == 2.0 and summary["min_ms"] == 1.0


@pytest.mark.large
def test_bench_train_quick(tmp_path):
    report = _run("bench_train", tmp_path, "--quick", "--blocks", "0")
    (row,) = report["rows"]
    assert row["blocks"] == 0 and row["head"] == "2mt"
    assert row["images_per_s"] > 0 and row["forward_mflops_per_image"] > 0
    assert row["train_mflops_per_image"] == pytest.approx(3 * row["forward_mflops_per_image"], rel=1e-2)
    assert 0 < row["fraction_of_peak"] and row["step"]["calls"] == report["settings"]["steps"]
    assert "3 x forward" in report["flops_rule"]


@pytest.mark.large
def test_bench_gpu_train_quick(tmp_path):
    # Mixed precision and two steps per execution: the options the default --quick run leaves out.
    report = _run("bench_gpu_train", tmp_path, "--quick", "--modes", "mixed", "--steps-per-execution", "2")
    (row,) = report["rows"]
    assert (row["mode"], row["steps_per_execution"], row["strategy"]) == ("mixed", 2, "auto")
    assert row["images_per_s"] > 0 and row["steps"] == report["settings"]["steps"]
    assert report["data"]["generate"]["items"] >= 256 and report["data"]["prepare"]["items"] > 0
    assert report["training_faces"] > 0 and report["pipeline"]["cached"]["items"] > 0
    assert set(report["targets"]) == {"training_images_per_s", "pipeline_images_per_s"}
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())


@pytest.mark.large
def test_bench_inference_quick(tmp_path):
    report = _run("bench_inference", tmp_path, "--quick", "--blocks", "0")
    paths = {r["path"] for r in report["rows"]}
    assert {"keras tf.function", "keras predict_on_batch", "SavedModel serving_default", "LiteRT model.tflite"} <= paths
    for r in report["rows"]:
        assert r["batch1_ms_per_face"] > 0 and r["batch_n_faces_per_s"] > 0 and r["fraction_of_peak"] > 0
    assert set(report["targets"]) == {"savedmodel_batch1_ms_per_face", "savedmodel_batch256_faces_per_s"}
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())


@pytest.mark.large
def test_bench_runtimes_quick(tmp_path):
    from va2att.serving.loading import gpu_visible

    report = _run("bench_runtimes", tmp_path, "--quick")
    assert report["kinds"] == {"savedmodel": "saved_model", "litert": "litert",
                               "auto": "saved_model" if gpu_visible() else "litert"}
    assert all(len(report["faces_per_s"][r][str(n)]) == 2 and min(report["faces_per_s"][r][str(n)]) > 0
               for r in report["kinds"] for n in report["settings"]["sizes"])


@pytest.mark.large
def test_bench_video_quick(tmp_path):
    """predict on two short generated two-face videos, each in a process of its own, with every output."""
    import bench_video

    out = tmp_path / "video.json"
    assert bench_video.main(["--quick", "--every-output", "--work", str(tmp_path / "work"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert SYSTEM_KEYS <= set(report["system"]) and [r["minutes"] for r in report["rows"]] == [0.05, 0.1]
    for row in report["rows"]:
        assert row["frames_analysed"] == round(row["video"]["frames"] / 10)  # predict's default: one frame in 10
        assert row["tracks"] >= 2 and row["peak_rss_mb"] > 0 and row["real_time_factor"] > 0
    assert (tmp_path / "work" / "rows-0.1min-timeline.png").is_file() and not list((tmp_path / "work").glob("*.mp4"))


@pytest.mark.large
def test_bench_data_quick(tmp_path):
    report = _run("bench_data", tmp_path, "--quick")
    # The keys the script wrote before the shared reporting was added are still there.
    for key in ("machine", "synthetic_generate", "prepare_landmarks", "prepare_mtcnn", "prepare_all_cores",
                "pipeline", "model_train", "pipeline_over_model"):
        assert key in report, key
    assert report["pipeline"]["items"] > 0
    assert set(report["targets"]) == {"prepare_landmarks_faces_per_s_per_core", "pipeline_over_model"}


@pytest.mark.large
def test_bench_predict_quick(tmp_path):
    report = _run("bench_predict", tmp_path, "--quick")
    assert {"machine", "model", "rows", "seconds_per_row"} <= set(report)
    assert {"detect+align (512x512, 1 face)", "model batch 1", "model batch 256"} <= set(report["rows"])
    default = "default (smallest face 32, step 0.5)"
    frame_rows = [k for k in report["rows"] if k.startswith("frame 640x480") and default in k]
    assert any("photo mode" in k for k in frame_rows) and any("video mode" in k for k in frame_rows)
    for runtime in ("savedmodel", "litert", "auto"):  # Predictor on an export, each runtime
        video = f"frame 640x480, video mode (detect every 5), export, {runtime}"
        assert {f"frame 640x480, photo mode, export, {runtime}", video} <= set(report["rows"])
    assert any(k.startswith("group photo") for k in report["rows"])
    # One recall row per detector setting, one cell per photo, counted against the photo's faces.
    assert set(report["recall"]) == {default, "whole picture (MTCNN settings)"}
    group = report["recall"][default]["group 1280x800"]
    assert group["expected"] == 8 and 0 <= group["found"] <= 8
    assert set(report["targets"]) == {"frame_640x480_photo_mode_fps", "frame_640x480_video_mode_fps",
                                      "recall_no_worse_than_whole_picture"}


@pytest.mark.large
def test_bench_compare_quick(tmp_path):
    report = _run("bench_compare", tmp_path, "--quick")
    models = [r["model"] for r in report["rows"]]
    assert models[:4] == ["va2att", "va2att serving_xla", "va2att, Keras graph", "va2att LiteRT"]
    assert {"EfficientNet-B0 224x224x3", "MobileNetV2 224x224x3", "FER CNN 64x64x1"} <= set(models)
    for r in report["rows"]:
        assert r["batch1"]["calls"] == 2 * 3 and r["batch1_ms"] > 0 and r["batch_n_images_per_s"] > 0
        assert r["forward_mflops"] > 0 and r["batch_n_fraction_of_peak"] > 0
    assert next(r for r in report["rows"] if r["model"] == "va2att")["latency_ratio"] == 1.0
    ops = report["va2att"]["ops"]
    assert ops["after"]["executed_nodes"] < ops["before"]["executed_nodes"]
    assert ops["after"]["saved_batch_norms"] < ops["before"]["saved_batch_norms"]
    assert all(d < 1e-4 for d in report["va2att"]["max_abs_difference_keras_vs_savedmodel"].values())
    assert set(report["va2att"]["max_abs_difference_keras_vs_savedmodel"]) >= {"va2att", "va2att LiteRT"}
    assert set(report["goals"]) == {
        "default_path_batch1_vs_fer_cnn", "serving_default_batch1_vs_fer_cnn", "litert_batch1_vs_fer_cnn",
        "default_path_batch1_sooner_than_efficientnet", "serving_default_batch1_sooner_than_efficientnet"}
    assert all(isinstance(g["met"], bool) for g in report["goals"].values())


@pytest.mark.large
def test_bench_serving_quick(tmp_path):
    report = _run("bench_serving", tmp_path, "--quick")
    settings = {r["setting"] for r in report["rows"]}
    assert {"savedmodel, TF default threads", "savedmodel, intra-op 1 (compose)", "litert, 1 thread"} <= settings
    assert any(s.startswith("LiteRTModel float32 (chunks)") for s in settings)  # va2att's own LiteRT runtime
    assert {r["batch"] for r in report["rows"]} == {1, 4}
    for r in report["rows"]:
        assert r["faces_per_s"] > 0 and r["fraction_of_peak"] > 0 and r["cores_used"] > 0
    assert set(report["goals"]) == {"fastest_runtime", "serving_default_tf_default_threads",
                                    "serving_default_compose_threads"}
    # The op profile of each TensorFlow worker: time by op type, FLOPs of its contractions by map size.
    profile = report["profiles"]["savedmodel, TF default threads"]
    assert profile["by_op"] and abs(sum(p["share"] for p in profile["by_op"]) - 1) < 0.01
    assert "48x48" in profile["contractions_by_map"]
    # The workers (one process per setting) have ended and been reaped.
    assert report["settings"]["worker_pids"] and not [pid for pid in report["settings"]["worker_pids"]
                                                      if Path(f"/proc/{pid}").exists()]


@pytest.mark.large
def test_all_runs_the_benchmarks_and_writes_their_tables(tmp_path):
    import all as run_all

    document = tmp_path / "BENCHMARKS.md"
    document.write_text(f"# Benchmarks\n\nkept\n\n{run_all.MARKERS[0]}\nold tables\n{run_all.MARKERS[1]}\n\nkept too\n")
    out = tmp_path / "results"
    assert run_all.main(["--quick", "--only", "inference", "--out", str(out), "--write", str(document)]) == 0
    (run,) = json.loads((out / "runs.json").read_text())
    assert run["status"] == 0 and run["command"].startswith("python benchmarks/bench_inference.py --quick")
    tables = (out / "tables.md").read_text()
    assert "### inference:" in tables and "SavedModel serving_default" in tables and "matmul peak" in tables
    text = document.read_text()
    assert "old tables" not in text and tables.strip() in text
    assert text.startswith("# Benchmarks\n\nkept\n") and text.endswith("kept too\n")
    # The tables of a run can be written again without running anything.
    document.write_text(f"{run_all.MARKERS[0]}\n{run_all.MARKERS[1]}\n")
    assert run_all.main(["--out", str(out), "--tables-only", "--write", str(document)]) == 0
    assert tables.strip() in document.read_text()
    # Tables stand alone (a blank line around them) and the lines between them are text blocks.
    assert run_all.as_markdown("| a |\n|--:|\n| 1 |\ntarget x: met\n\n| b |") == \
        "| a |\n|--:|\n| 1 |\n\n```text\ntarget x: met\n```\n\n| b |\n"
    # A script that fails is listed as not measured; the others' tables are still written.
    failed = run_all.tables([dict(run, name="train", status=1)], out)
    assert "Not measured: the script ended with exit status 1" in failed
