"""Resolving `--data` to prepared folders when several processes (the workers of one run) do it at once."""

import threading
import time

from va2att.config import DataConfig
from va2att.data.preparation import is_prepared
from va2att.data.source import resolve_data
from va2att.data.synthetic import DEMOS
from va2att.util.locking import folder_lock


def test_a_synthetic_set_another_process_is_generating_is_waited_for_not_generated_twice(tmp_path):
    cfg = DataConfig(data="demo", demo_train=16, demo_val=8)
    base = tmp_path / f"demo-v{DEMOS['demo'].version}-16-8-seed0"
    logs, result = [], []
    resolving = threading.Thread(target=lambda: result.append(resolve_data(cfg, cache_dir=tmp_path, log=logs.append)))
    with folder_lock(base, "synthetic set"):  # another worker of the run is generating the set
        resolving.start()
        deadline = time.time() + 60
        while not any("Waiting for it to finish" in line for line in logs):
            assert time.time() < deadline and resolving.is_alive(), logs
            time.sleep(0.05)
        time.sleep(1.5)
        assert resolving.is_alive() and not (base / "raw").exists()  # it waits and writes nothing meanwhile
    resolving.join(timeout=300)  # the other process stopped without finishing: this one generates the set
    assert result and is_prepared(result[0]), logs
    assert sum(line.startswith("Generating the synthetic demo set") for line in logs) == 1
