"""Op counts of a SavedModel signature: as saved, and as TensorFlow runs it after its graph optimizer.

- `saved_op_counts`: the nodes of the signature's function and of every function it calls (what
  `saved_model.pb` holds for it), by op type; argument and return placeholders are left out.
- `executed_op_counts`: the nodes that one call actually runs, by op type, after TensorFlow's graph
  optimizer (grappler: constant folding, control-flow lowering, function inlining, op fusion such
  as convolution + bias + ReLU) and the oneDNN rewrite. The SavedModel is loaded into a session, as
  TF Serving loads it, and the partition graphs of one traced call are counted.

A call's fixed cost at batch 1 grows with the number of nodes it runs, so these counts say how much
of the batch-1 latency is graph overhead (benchmarks/bench_compare.py prints both).
"""

from __future__ import annotations

import collections
import os

from va2att.serving.signature import SERVING_DEFAULT

NOT_OPS = ("Placeholder", "_Arg", "_Retval", "NoOp")  # a function's inputs, outputs and pure control nodes
COUNTED_TAGS = ("serve",)


def _called_functions(node) -> list[str]:
    """The functions a node runs (`StatefulPartitionedCall`, `PartitionedCall`, the branches of `If`, ...)."""
    return [value.func.name for value in node.attr.values() if value.HasField("func")]


def saved_op_counts(saved_model_dir: str | os.PathLike, signature: str = SERVING_DEFAULT) -> collections.Counter:
    """Op types of `signature`'s function graph in the SavedModel and of every function it reaches."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    graph_def = loaded.signatures[signature].graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    counts: collections.Counter = collections.Counter()
    pending = [list(graph_def.node)]
    seen: set[str] = set()
    while pending:
        nodes = pending.pop()
        for node in nodes:
            if node.op not in NOT_OPS:
                counts[node.op] += 1
            for name in _called_functions(node):
                if name in library and name not in seen:
                    seen.add(name)
                    pending.append(list(library[name].node_def))
    return counts


def executed_op_counts(saved_model_dir: str | os.PathLike, signature: str = SERVING_DEFAULT,
                       batch: int = 1) -> collections.Counter:
    """Op types of the nodes one call of `signature` runs after graph optimization (a session, as TF Serving).

    The call feeds zeros of the signature's input shape with `batch` rows (the signature must take one
    float32 input). Placeholders, arguments, return values and no-ops are not counted.
    """
    import numpy as np
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, list(COUNTED_TAGS), str(saved_model_dir))
        signature_def = meta_graph.signature_def[signature]
        (feed,) = signature_def.inputs.values()
        shape = [batch if d.size < 0 else d.size for d in feed.tensor_shape.dim]
        fetches = {name: info.name for name, info in signature_def.outputs.items()}
        options = tf.compat.v1.RunOptions(output_partition_graphs=True)
        metadata = tf.compat.v1.RunMetadata()
        session.run(fetches, {feed.name: np.zeros(shape, np.float32)}, options=options, run_metadata=metadata)
    counts: collections.Counter = collections.Counter()
    for partition in metadata.partition_graphs:
        counts.update(node.op for node in partition.node if node.op not in NOT_OPS)
        for function in partition.library.function:
            counts.update(node.op for node in function.node_def if node.op not in NOT_OPS)
    return counts
