"""Long videos through predict: peak memory against the video's length, and the real-time factor with the defaults.

    python benchmarks/bench_video.py [--minutes 1 10] [--json bench_video.json]
    python benchmarks/bench_video.py --quick      # 0.05 and 0.1 minutes: checks the script runs
    python benchmarks/bench_video.py --every-output   # also --smooth 1 --json --summary --timeline
    python benchmarks/bench_video.py --write-video two-faces.mp4 --minutes 0.5   # only write such a video

For each length it generates a 640×480 video at 30 frames/s (MPEG-4 part 2, `mp4v`) with tests/face_video.py:
scikit-image's astronaut and camera man, faces 80 pixels wide, moving back and forth across the frame in
opposite directions (one back-and-forth every `PERIOD_SECONDS`, so they cross twice a period). Then it runs

    python -m va2att.predict VIDEO --model MODEL --csv rows.csv

with predict's defaults (one frame in 10, whole-frame detection every 5 analysed frames and the faces
followed in between, batch 64, TensorFlow's default threads) in a process of its own, and reads that
process's peak resident memory (`ru_maxrss`, from `os.wait4` on it alone) and its wall time. The
real-time factor is the video's duration ÷ the wall time, TensorFlow's start and the model's loading
included (≥ 1: faster than real time). The model is `ModelConfig()`'s default network, untrained,
saved as `.keras` (the time does not depend on the weights). The report also holds the CSV's rows and
tracks (and each track's rows in the upper and the lower half of the frame: one face each), the machine
(benchmarks/common.py `system_report`) and the load average before and after each run.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The moving faces are a test fixture (tests/face_video.py); the benchmark measures on the same videos.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import common  # benchmarks/common.py: puts the repository on sys.path; machine facts

FPS = 30.0
SIZE = (480, 640)  # height, width
FACE_WIDTH = 80
PERIOD_SECONDS = 20.0


def make_video(path: Path, minutes: float) -> dict:
    """Write the two-face video of `minutes`; its facts."""
    import face_video

    frames = round(minutes * 60 * FPS)
    start = time.perf_counter()
    face_video.write_video(path, frames, fps=FPS, size=SIZE, face_width=FACE_WIDTH, period=PERIOD_SECONDS * FPS,
                           fourcc="mp4v")
    return {"frames": frames, "seconds": frames / FPS, "bytes": path.stat().st_size,
            "generation_s": round(time.perf_counter() - start, 1)}


def make_model(path: Path) -> int:
    """The default network, untrained, saved as .keras; its parameter count."""
    from va2att.config import ModelConfig
    from va2att.model.network import build_model

    model = build_model(ModelConfig())
    model.save(path)
    return model.count_params()


def run_predict(video: Path, model: Path, rows: Path, every_output: bool = False) -> dict:
    """predict on `video` in a process of its own: wall time, peak resident memory, exit status."""
    command = [sys.executable, "-m", "va2att.predict", str(video), "--model", str(model), "--csv", str(rows)]
    if every_output:
        stem = rows.with_suffix("")
        command += ["--smooth", "1", "--json", f"{stem}.json", "--summary", f"{stem}-summary.json",
                    "--timeline", f"{stem}-timeline.png"]
    load_before = common.load_average()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=common.REPO)
    stderr = proc.stderr.read()  # until predict closes it: when it ends
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed ({proc.returncode}): {stderr.decode(errors='replace')[-2000:]}")
    with open(rows, newline="") as f:
        table = list(csv.DictReader(f))
    return {"command": " ".join(command[1:]), "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "rows": len(table), "frames_analysed": len({r["frame"] for r in table}),
            "tracks": len({r["track"] for r in table if r["track"]}),
            # the astronaut moves along the upper half, the camera man along the lower: a track that changed
            # faces at a crossing would have rows in both halves
            "rows_per_track_and_half": {f"{t} {half}": n for (t, half), n in sorted(Counter(
                (r["track"], "upper" if float(r["y"]) + float(r["height"]) / 2 < SIZE[0] / 2 else "lower")
                for r in table if r["face"]).items())},
            "rows_without_face": sum(1 for r in table if not r["face"]),
            "load_average_before": load_before, "load_average_after": common.load_average()}


def run(args) -> dict:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-video-"))
    work.mkdir(parents=True, exist_ok=True)
    parameters = make_model(work / "model.keras")
    rows = []
    for minutes in args.minutes:
        video = work / f"two-faces-{minutes:g}min.mp4"
        facts = make_video(video, minutes)
        result = run_predict(video, work / "model.keras", work / f"rows-{minutes:g}min.csv", args.every_output)
        result["real_time_factor"] = round(facts["seconds"] / result["wall_s"], 2)
        rows.append({"minutes": minutes, "video": facts, **result})
        if not args.keep:
            video.unlink()
    return {"settings": {"fps": FPS, "size": list(SIZE), "face_width": FACE_WIDTH, "period_s": PERIOD_SECONDS,
                         "predict": "defaults: --every 10, --detect-every 5, --batch-size 64",
                         "every_output": args.every_output},
            "model": {"config": "ModelConfig() defaults", "parameters": parameters, "weights": "untrained"},
            "rows": rows, "system": common.system_report()}


def format_table(report: dict) -> str:
    header = ["video", "frames analysed", "rows", "tracks", "wall (s)", "real-time factor", "peak RSS (MB)"]
    cells = [[f"{r['minutes']:g} min", r["frames_analysed"], r["rows"], r["tracks"], r["wall_s"],
              r["real_time_factor"], r["peak_rss_mb"]] for r in report["rows"]]
    return common.format_table(header, cells) + "\n" + common.system_line(report["system"], None)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0], help="video lengths (default 1 10)")
    parser.add_argument("--quick", action="store_true", help="3- and 6-second videos (tests)")
    parser.add_argument("--work", help="folder for the videos, the model and the CSVs (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated videos")
    parser.add_argument("--every-output", action="store_true",
                        help="also --smooth 1 --json --summary --timeline (default: --csv only)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON to this file")
    parser.add_argument("--write-video", type=Path, metavar="FILE.mp4",
                        help="only write the video of the first --minutes to FILE.mp4 and stop")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = [0.05, 0.1]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.write_video:
        print(make_video(args.write_video, args.minutes[0]))
        return 0
    return common.run_script(lambda _: args, run, format_table, argv)


if __name__ == "__main__":
    sys.exit(main())
