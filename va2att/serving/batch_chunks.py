"""A large batch served as chunks of a few faces, two chunks at a time, when the network runs on a CPU.

Run whole, the network serves a face most cheaply in batches of 8 to 32 on a CPU (BENCHMARKS.md,
"Serving at the machine's limit"): at batch 256 one layer's activations (256 x 24 x 24 x 128
floats, 75 MB) leave the caches and every element-wise pass goes to memory, and with one intra-op
thread (the CPU server's setting) a single batch keeps one core busy and the other mostly waiting.
`outputs_in_chunks` therefore runs a batch of more than `CHUNK` faces as equal chunks of at most
`CHUNK` (padded with at most one blank face per chunk, whose rows are dropped) in a `tf.map_fn` that
keeps `PARALLEL` chunks in flight: each runs on its own core with its activations in that core's
caches. Rows do not affect each other (inference batch norms), so the outputs are the whole batch's.

Measured side by side in one process (the export's `serving_default` against its
`serving_whole_batch`, the default model, Intel Xeon, 2 cores, interleaved rounds): batch 256 1.20x
with TensorFlow's default threads and 1.64x with one intra-op thread; batch 32 1.02x and 1.33x;
batch 1 0.99x and 1.00x (it does not take this path). Chunks of 8 and 32, and one or four in flight,
were slower in the same kind of comparison.

Only on a CPU: `DeviceIndex` tells where the graph runs, and a GPU (TF Serving's GPU build) serves
the whole batch at once, as before, since it is fastest at large batches. The LiteRT model is
converted from the network without this loop (`va2att.serving.export`): the converter does not take
`DeviceIndex`, and LiteRT's CPU delegate does not run a loop's body.
"""

from __future__ import annotations

import tensorflow as tf

CHUNK = 16  # faces per chunk
PARALLEL = 2  # chunks in flight (the cores of the CPU server this was measured on)


def on_cpu() -> tf.Tensor:
    """A boolean scalar: True where the op runs on a CPU (placed with the graph, not known at trace time)."""
    return tf.equal(tf.raw_ops.DeviceIndex(device_names=["CPU"]), 0)


def outputs_in_chunks(forward, images, whole, output_specs: dict, chunk: int = CHUNK, parallel: int = PARALLEL):
    """`forward`'s outputs for `images` (a dict of `[n, ...]` tensors), batches of more than `chunk` faces on a CPU
    computed chunk by chunk; any other batch by `whole(images)`.

    Args:
        forward: callable, float32 `[m, 48, 48, 1]` -> {name: `[m, ...]`}, for 1 <= m <= chunk.
        images: float32 `[n, 48, 48, 1]`.
        whole: callable, `images` -> the same outputs for the whole batch (also for n = 0).
        output_specs: {name: tf.TensorSpec([None, ...])}, the outputs' shapes and types.
    """
    # The loop is a function of its own that TensorFlow does not inline: a batch that runs whole then
    # passes one skipped call node, not the loop's copy of the network (measured at batch 1: +0.3%
    # median latency against the network alone, +1.0% when inlined; 30 interleaved rounds).
    @tf.function(experimental_attributes={"_noinline": True})
    def in_chunks(images):
        count = tf.shape(images)[0]
        chunks = (count + chunk - 1) // chunk
        size = (count + chunks - 1) // chunks  # equal chunks: at most one blank face per chunk
        blank = tf.zeros(tf.concat([[chunks * size - count], tf.shape(images)[1:]], 0), images.dtype)
        stacked = tf.reshape(tf.concat([images, blank], 0), tf.concat([[chunks, size], tf.shape(images)[1:]], 0))
        outputs = tf.map_fn(forward, stacked, fn_output_signature=output_specs, parallel_iterations=parallel)
        return {name: tf.reshape(value, [-1, *value.shape[2:]])[:count]
                for name, value in outputs.items()}

    count = tf.shape(images)[0]
    return tf.cond(tf.logical_and(count > chunk, on_cpu()), lambda: in_chunks(images), lambda: whole(images))
