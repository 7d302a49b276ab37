"""Ctrl-C deferred to a loop's own points (`va2att.util.interrupt`)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from va2att.util.interrupt import deferred_interrupt


def test_the_first_press_waits_for_check_and_the_second_stops_at_once():
    with deferred_interrupt() as interrupt:
        interrupt.check()  # nothing pressed: nothing raised
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.check()  # taken once
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_another_handler_and_other_threads_are_left_alone():
    def own(signum, frame):
        calls.append(signum)

    calls = []
    previous = signal.signal(signal.SIGINT, own)
    try:
        with deferred_interrupt() as interrupt:
            assert signal.getsignal(signal.SIGINT) is own
            signal.raise_signal(signal.SIGINT)
            interrupt.check()
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)

    seen = []

    def in_thread():
        with deferred_interrupt() as interrupt:
            seen.append(signal.getsignal(signal.SIGINT))
            interrupt.check()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def test_training_stops_after_the_step_in_which_ctrl_c_was_pressed():
    import keras
    import numpy as np

    from va2att.training.callbacks import StopBetweenSteps

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    begun, finished = [], []

    class Press(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            begun.append(batch)
            if batch == 2:  # pressed while step 2 runs
                signal.raise_signal(signal.SIGINT)

        def on_train_batch_end(self, batch, logs=None):
            finished.append(batch)

    data = np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32")
    with deferred_interrupt() as interrupt, pytest.raises(KeyboardInterrupt):
        model.fit(*data, batch_size=1, epochs=1, verbose=0, callbacks=[Press(), StopBetweenSteps(interrupt)])
    assert begun == finished == [0, 1, 2]  # step 2 finished; step 3 never began
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# Ctrl-C arrives while a TensorFlow op runs that then fails: TensorFlow builds its error in Python, the
# pending KeyboardInterrupt is raised inside that, and pybind11 turns both into a RuntimeError. Deferred,
# the op's error arrives as itself and the Ctrl-C at check().
_SLOW_FAILING_OP = textwrap.dedent("""
    import os, signal, threading
    import numpy as np
    import tensorflow as tf
    from va2att.util.interrupt import deferred_interrupt

    x = tf.constant(np.random.default_rng(0).random((1500, 1500), np.float32))

    @tf.function
    def slow_then_failing(x):
        for _ in range(60):
            x = tf.matmul(x, x) / 1500.0
        return tf.debugging.check_numerics(x * np.inf, "the op's own error")

    try:
        slow_then_failing(x)
    except tf.errors.InvalidArgumentError:
        pass  # traced and run once before the timed call

    def press_ctrl_c_soon():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
""")

_IN_A_LOOP = _SLOW_FAILING_OP + textwrap.dedent("""
    press_ctrl_c_soon()
    with deferred_interrupt() as interrupt:
        try:
            slow_then_failing(x)
        except tf.errors.InvalidArgumentError:
            print("op error:", interrupt.requested)
        try:
            interrupt.check()
        except KeyboardInterrupt:
            print("interrupted at check")
""")

# Preparation counts a row that raises as failed: the RuntimeError would have cost the row and the Ctrl-C.
_IN_PREPARATION = _SLOW_FAILING_OP + textwrap.dedent("""
    from va2att.data.work_unit import WorkUnit, run_unit

    class Layout:
        counts = ()

        def process_row(self, root, row, options, result):
            if row == 1:
                press_ctrl_c_soon()
                slow_then_failing(x)

        def row_path(self, row):
            return f"row{row}"

    try:
        _, _, result = run_unit(WorkUnit("train", 0, ".", [0, 1, 2], Layout(), None))
        print("unit finished:", dict(result.skipped))
    except KeyboardInterrupt:
        print("interrupted between rows")
""")


def _run(spawn, script: str) -> list[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = spawn([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out.splitlines()


def test_a_press_during_a_failing_tensorflow_op_keeps_both_exceptions(spawn):
    assert _run(spawn, _IN_A_LOOP) == ["op error: True", "interrupted at check"]


def test_a_press_during_preparation_stops_it_between_rows(spawn):
    assert _run(spawn, _IN_PREPARATION) == ["interrupted between rows"]
