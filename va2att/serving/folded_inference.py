"""The network's inference graph with its weights folded in: what the exported SavedModel serves.

A Keras model traced for serving runs far more graph nodes than arithmetic ops: every weight is a
variable read, and inside the export's empty-batch `tf.cond` every captured variable also passes
through a `Switch` and an `Identity` (TensorFlow's lowering of the cond), so at batch 1 the time
goes to running nodes, not to multiply-adds. `folded_forward` builds the same function without any
of that:

1. Freeze: the forward pass `model(images, training=False)` is traced once and every variable read
   becomes a constant (`convert_variables_to_constants_v2`); the weights then live in the graph.
2. Fold batch norms into convolutions (`fold_batch_norms`): an inference batch norm that directly
   follows a convolution (with or without a bias) is affine per output channel, so
   `BN(conv(x, W) + b) = conv(x, W * s) + (b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`:
   the convolution gets the scaled kernel and the batch norm becomes a `BiasAdd`, which TensorFlow's
   graph optimizer then fuses with the convolution (and a following ReLU) into one kernel. A batch
   norm after anything else (an addition, a resize: the pre-activation `BN-ReLU` opening each
   residual unit) is left as it is: a ReLU between a batch norm and the next convolution forbids
   moving the normalisation into that convolution.
3. Write the remaining batch norms as a multiply and an add (`scale_and_shift_batch_norms`): the same
   per-channel affine map, run as two light element-wise ops instead of one batch-norm kernel.
   Where every channel's scale is positive and the ReLU after it feeds only convolutions (directly or
   through poolings and spatial means, which commute with a positive per-channel scale), the
   multiply moves into those convolutions' kernels instead (`scales_into_next_convolutions`):
   `relu(s * x + t) = s * relu(x + t / s)` for `s > 0`, so only the add is left.
4. Run each 1x1 convolution as a matrix product (`pointwise_convolutions_as_matmuls`): a stride-1 1x1
   convolution is `reshape(reshape(x, [-1, C_in]) @ W, [-1, H, W, C_out])`, and its bias and ReLU (or
   the attention mask's sigmoid) move inside the reshapes, so TensorFlow fuses the product, the bias and
   the activation into one kernel.
5. Run the poolings, softmaxes and small batch matrix products without oneDNN's kernels for them:
   a 1x1 subsampling as a reshape and a slice, a max pooling as reshapes and two maxima
   (`pools_as_reshapes_and_reductions`), a softmax as its exponentials over their sum
   (`softmaxes_as_exponentials`), the level attention's two products as sums of products
   (`small_batch_matmuls_as_reductions`).
6. Drop pass-through nodes (`drop_identities`) and every node no output needs.

Steps 3 to 5 matter at batch 1, where a call's time goes to running one small kernel after another:
oneDNN's convolution and batch-norm kernels (TensorFlow's default on CPUs with AVX-512 VNNI) carry a
fixed cost per call that its matrix product and TensorFlow's element-wise kernels do not (its pooling,
softmax and batch matrix product 45-110 µs a call at batch 1 whatever the width: step 5 took 5% off
`serving_default`'s batch-1 latency of the default model, and nothing off batch 256; BENCHMARKS.md).
With TensorFlow's own kernels the graph optimizer already makes step 3's rewrite, and step 4 changes little.

The result uses only standard TensorFlow ops (no va2att or Keras code, no cuDNN-only kernel: the
recurrent layers are traced with their portable implementation by the caller,
`va2att.serving.export.portable_recurrent_layers`), so a SavedModel built on it loads in plain TensorFlow
and TF Serving. The outputs equal the model's up to float rounding (tests/test_folded_inference.py).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

FOLDABLE_INPUTS = ("Conv2D",)  # ops whose output channels a following batch norm can be folded into
BATCH_NORM_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")


@dataclasses.dataclass(frozen=True)
class FoldedGraph:
    """A frozen, folded inference graph.

    Args:
        graph_def: tf.compat.v1.GraphDef with the weights as constants.
        input_tensor: str, the name of the float32 `[None, 48, 48, 1]` input tensor (e.g. "image:0").
        output_tensors: dict, output name -> tensor name in `graph_def`.
        folded: int, the batch norms folded into the convolution before them.
        scaled: int, the other batch norms, written as a multiply and an add.
        matmuls: int, the 1x1 convolutions run as matrix products.
    """

    graph_def: object
    input_tensor: str
    output_tensors: dict
    folded: int
    scaled: int = 0
    matmuls: int = 0


def _node_name(reference: str) -> str:
    """`"^name"`, `"name:1"` or `"name"` -> `"name"`."""
    return reference.lstrip("^").split(":")[0]


def _output_index(reference: str) -> int:
    parts = reference.split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def _consumers(graph_def) -> dict[str, list[tuple[object, str]]]:
    """node name -> [(consumer node, the input reference naming it)] over all data and control inputs."""
    found: dict[str, list] = {}
    for node in graph_def.node:
        for reference in node.input:
            found.setdefault(_node_name(reference), []).append((node, reference))
    return found


def _constant_value(nodes: dict, reference: str):
    """The NumPy value of `reference` when it is a `Const`, or an `Identity`, `Squeeze` or `Reshape` (by a constant
    shape) of one, any number deep (Keras 3 hands a convolution its bias as `Squeeze(Reshape(bias))`); else None."""
    import tensorflow as tf

    node = nodes.get(_node_name(reference))
    if node is None:
        return None
    if node.op == "Const":
        return tf.make_ndarray(node.attr["value"].tensor)
    if node.op in ("Identity", "Squeeze") and len(node.input) == 1:
        value = _constant_value(nodes, node.input[0])
        if value is None or node.op == "Identity":
            return value
        return np.squeeze(value, axis=tuple(node.attr["squeeze_dims"].list.i) or None)
    if node.op == "Reshape" and len(node.input) == 2:
        value, shape = _constant_value(nodes, node.input[0]), _constant_value(nodes, node.input[1])
        return None if value is None or shape is None else value.reshape(shape)
    return None


def _only_data_consumer(consumers: dict, name: str, expected) -> bool:
    """Whether node `name`'s outputs feed `expected` alone, through its first output only."""
    users = consumers.get(name, [])
    return len(users) == 1 and users[0][0] is expected and not users[0][1].startswith("^") \
        and _output_index(users[0][1]) == 0


def _const_node(graph_def, name: str, value, dtype=np.float32):
    """A `Const` node holding `value` as `dtype` (float32 unless given, e.g. int32 for a shape)."""
    import tensorflow as tf

    node = graph_def.node.add()
    node.name = name
    node.op = "Const"
    node.attr["dtype"].type = tf.as_dtype(dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(value, dtype)))
    return node


def _data_format(node) -> bytes:
    return node.attr["data_format"].s or b"NHWC"


def _inference_batch_norms(graph_def, consumers):
    """The NHWC inference batch norms of `graph_def` whose batch-statistics outputs nothing reads."""
    for bn in list(graph_def.node):
        if bn.op not in BATCH_NORM_OPS or bn.attr["is_training"].b or _data_format(bn) != b"NHWC":
            continue
        if any(_output_index(ref) > 0 for _, ref in consumers.get(bn.name, []) if not ref.startswith("^")):
            continue  # the batch statistics outputs are used: not an inference-only batch norm
        yield bn


def _batch_norm_affine(bn, nodes):
    """`(s, t)` with `bn(x) = x * s + t` per channel, from its constant parameters; None if one is not constant."""
    gamma, beta, mean, variance = (_constant_value(nodes, ref) for ref in bn.input[1:5])
    if any(v is None for v in (gamma, beta, mean, variance)):
        return None
    scale = gamma.astype(np.float64) / np.sqrt(variance.astype(np.float64) + bn.attr["epsilon"].f)
    return scale, beta - mean * scale


def fold_batch_norms(graph_def):
    """`graph_def` with every inference batch norm that directly follows a convolution folded into it.

    Pattern: float32 `Conv2D(x, W)` [-> `BiasAdd(b)`] -> `FusedBatchNorm*` (is_training false, NHWC), where the
    kernel, the bias and the four batch-norm tensors are constants and each intermediate result feeds
    only the next node. The convolution's kernel becomes `W * s` (per output channel) and the batch
    norm node becomes a `BiasAdd` of `(b - mean) * s + beta`, under the batch norm's name (so its
    consumers are unchanged). Returns `(new_graph_def, number_folded)`; the input is not modified.
    Replaced constants stay in the graph until pruned (`prune`).
    """
    import tensorflow as tf

    graph_def = _copy(graph_def)
    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    folded = 0
    for bn in _inference_batch_norms(graph_def, consumers):
        producer = nodes.get(_node_name(bn.input[0]))
        bias_add, bias = None, None
        if producer is not None and producer.op == "BiasAdd" and _data_format(producer) == b"NHWC":
            bias = _constant_value(nodes, producer.input[1])
            bias_add, producer = producer, nodes.get(_node_name(producer.input[0]))
            if bias is None or not _only_data_consumer(consumers, bias_add.name, bn):
                continue
        if producer is None or producer.op not in FOLDABLE_INPUTS or _data_format(producer) != b"NHWC":
            continue
        if producer.attr["T"].type != tf.float32.as_datatype_enum:
            continue  # e.g. a float16 convolution of a mixed-precision model: its kernel stays as it is
        if not _only_data_consumer(consumers, producer.name, bias_add or bn):
            continue
        kernel, affine = _constant_value(nodes, producer.input[1]), _batch_norm_affine(bn, nodes)
        if kernel is None or affine is None:
            continue
        scale, shift = affine
        shift = shift + (0.0 if bias is None else bias * scale)
        new_kernel = _const_node(graph_def, f"{bn.name}/folded_kernel", kernel * scale)
        new_bias = _const_node(graph_def, f"{bn.name}/folded_bias", shift)
        producer.input[1] = new_kernel.name
        bn.op = "BiasAdd"
        bn.ClearField("attr")
        bn.attr["T"].type = tf.float32.as_datatype_enum
        bn.attr["data_format"].s = b"NHWC"
        control = [ref for ref in bn.input if ref.startswith("^")]
        del bn.input[:]
        bn.input.extend([producer.name, new_bias.name, *control])
        folded += 1
    return graph_def, folded


def _retype(node, op: str, **attrs):
    """Turn `node` into a float32 `op` with `attrs` (bool, bytes or DataType enum values); inputs are kept."""
    import tensorflow as tf

    node.op = op
    node.ClearField("attr")
    node.attr["T"].type = tf.float32.as_datatype_enum
    for key, value in attrs.items():
        if isinstance(value, bool):
            node.attr[key].b = value
        elif isinstance(value, bytes):
            node.attr[key].s = value
        else:
            node.attr[key].type = value


def _new_node(graph_def, name: str, op: str, inputs, **attrs):
    node = graph_def.node.add()
    node.name = name
    node.input.extend(inputs)
    _retype(node, op, **attrs)
    return node


def scale_and_shift_batch_norms(graph_def):
    """`graph_def` with every inference batch norm whose parameters are constants written as
    `BiasAdd(Mul(x, s), beta - mean * s)`, `s = gamma / sqrt(var + eps)`, under the batch norm's name.

    Run after `fold_batch_norms` (which removes those that follow a convolution). Only float32 NHWC
    batch norms whose statistics outputs are unused are rewritten. Returns `(new_graph_def, number)`.
    """
    import tensorflow as tf

    graph_def = _copy(graph_def)
    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    scaled = 0
    for bn in _inference_batch_norms(graph_def, consumers):
        affine = _batch_norm_affine(bn, nodes)
        if bn.attr["T"].type != tf.float32.as_datatype_enum or affine is None:
            continue
        scale, shift = affine
        scale_node = _const_node(graph_def, f"{bn.name}/scale", scale)
        shift_node = _const_node(graph_def, f"{bn.name}/shift", shift)
        control = [ref for ref in bn.input if ref.startswith("^")]
        multiply = _new_node(graph_def, f"{bn.name}/scaled", "Mul", [bn.input[0], scale_node.name, *control])
        _retype(bn, "BiasAdd", data_format=b"NHWC")
        del bn.input[:]
        bn.input.extend([multiply.name, shift_node.name])
        scaled += 1
    return graph_def, scaled


CHANNEL_PRESERVING = ("AvgPool", "MaxPool", "Mean")
# Activations that TensorFlow fuses into a matrix product with its bias (`_FusedMatMul`; oneDNN's too):
# the ReLU of the convolutions, and the sigmoid that closes each attention mask.
FUSED_ACTIVATIONS = ("Relu", "Sigmoid")  # ops through which a positive per-channel scale passes


def _scale_passes_through(node, nodes) -> bool:
    """Whether `s * relu(x)` through `node` equals `s` times `node` of `relu(x)` for any positive per-channel `s`
    (NHWC poolings; a mean over spatial axes only)."""
    if node.op in ("AvgPool", "MaxPool"):
        return _data_format(node) == b"NHWC"
    if node.op == "Mean":
        axes = _constant_value(nodes, node.input[1])
        return axes is not None and all(int(a) in (1, 2) for a in np.ravel(axes))
    return False


def scales_into_next_convolutions(graph_def):
    """`graph_def` with the multiply of each `BiasAdd(Mul(x, s), t) -> Relu` (what
    `scale_and_shift_batch_norms` leaves) moved into the convolutions after the ReLU, when every
    entry of `s` is positive and the ReLU's output reaches only float32 NHWC `Conv2D`s of constant
    kernels, directly or through `CHANNEL_PRESERVING` ops that nothing else reads. Then
    `relu(s * x + t) = s * relu(x + t / s)`: the add becomes `t / s`, the multiply goes, and each
    convolution's kernel is scaled along its input channels (exact, zero padding included).
    Returns `(new_graph_def, number)`.
    """
    import tensorflow as tf

    graph_def = _copy(graph_def)
    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    moved = 0
    for shift_node in list(graph_def.node):
        if shift_node.op != "BiasAdd":
            continue
        multiply = nodes.get(_node_name(shift_node.input[0]))
        if multiply is None or multiply.op != "Mul" or not _only_data_consumer(consumers, multiply.name, shift_node):
            continue
        scale, shift = _constant_value(nodes, multiply.input[1]), _constant_value(nodes, shift_node.input[1])
        if scale is None or shift is None or scale.ndim != 1 or not np.all(scale > 0):
            continue
        users = consumers.get(shift_node.name, [])
        if not users or not _only_data_consumer(consumers, shift_node.name, users[0][0]) or users[0][0].op != "Relu":
            continue
        convolutions, pending, ok = [], [users[0][0]], True
        while pending and ok:
            node = pending.pop()
            for user, reference in consumers.get(node.name, []):
                if reference.startswith("^") or _output_index(reference) != 0:
                    ok = False
                elif user.op == "Conv2D" and _node_name(user.input[0]) == node.name \
                        and _data_format(user) == b"NHWC" and user.attr["T"].type == tf.float32.as_datatype_enum \
                        and _constant_value(nodes, user.input[1]) is not None:
                    convolutions.append(user)
                elif _scale_passes_through(user, nodes) and _node_name(user.input[0]) == node.name:
                    pending.append(user)
                else:
                    ok = False
        if not ok or not convolutions:
            continue
        for conv in convolutions:
            kernel = _constant_value(nodes, conv.input[1])
            conv.input[1] = _const_node(graph_def, f"{conv.name}/input_scaled_kernel",
                                        kernel * scale[:, None].astype(np.float32)).name
        shift_node.input[0] = multiply.input[0]
        shift_node.input[1] = _const_node(graph_def, f"{shift_node.name}/shift_over_scale", shift / scale).name
        moved += 1
    return graph_def, moved


def _static_shapes(graph_def) -> dict[str, list]:
    """node name -> static shape of its first output (None for unknown dimensions), by TensorFlow's shape inference."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    return {op.name: op.outputs[0].shape.as_list() for op in graph.get_operations()
            if op.outputs and op.outputs[0].shape.rank is not None}


def pointwise_convolutions_as_matmuls(graph_def):
    """`graph_def` with every stride-1 1x1 float32 NHWC convolution of a constant kernel, whose output's
    height and width are static, run as a matrix product on the flattened pixels.

    `Conv2D(x, W)` becomes `Reshape(MatMul(Reshape(x, [-1, C_in]), W[0, 0]), [-1, H, W, C_out])`. A
    `BiasAdd` of a constant that alone reads the convolution, and then a `Relu` or `Sigmoid`
    (`FUSED_ACTIVATIONS`) that alone reads it, move inside the reshapes (where TensorFlow fuses them
    with the product: the mask's sigmoid then costs no pass of its own); the final `Reshape` takes
    the name of the last node moved, so consumers are unchanged. Returns `(new_graph_def, number)`.
    """
    import tensorflow as tf

    graph_def = _copy(graph_def)
    shapes = _static_shapes(graph_def)
    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    rewritten = 0
    for conv in list(graph_def.node):
        if conv.op != "Conv2D" or _data_format(conv) != b"NHWC" or conv.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        kernel = _constant_value(nodes, conv.input[1])
        if kernel is None or kernel.shape[:2] != (1, 1) or list(conv.attr["strides"].list.i) != [1, 1, 1, 1]:
            continue
        if any(d != 1 for d in conv.attr["dilations"].list.i) or any(r.startswith("^") for r in conv.input):
            continue
        shape = shapes.get(conv.name)
        if shape is None or len(shape) != 4 or None in shape[1:]:
            continue
        chain = [conv]  # the convolution, then the nodes that move inside the reshapes
        for ops in (("BiasAdd",), FUSED_ACTIVATIONS):
            users = consumers.get(chain[-1].name, [])
            if not _only_data_consumer(consumers, chain[-1].name, users[0][0] if users else None):
                break
            user = users[0][0]
            if user.op not in ops or any(r.startswith("^") for r in user.input):
                break
            if user.op == "BiasAdd" and (_data_format(user) != b"NHWC" or _constant_value(nodes, user.input[1]) is None):
                break
            chain.append(user)
        name = conv.name
        flat_shape = _const_node(graph_def, f"{name}/flat_shape", [-1, kernel.shape[2]], np.int32)
        map_shape = _const_node(graph_def, f"{name}/map_shape", [-1, *shape[1:]], np.int32)
        flat = _new_node(graph_def, f"{name}/flat", "Reshape", [conv.input[0], flat_shape.name],
                         Tshape=tf.int32.as_datatype_enum)
        matrix = _const_node(graph_def, f"{name}/matrix", kernel[0, 0])
        output_name = chain[-1].name
        for node in chain:  # each node of the chain gets a new name; the reshape takes the last one's
            node.name = f"{node.name}/flat_{node.op.lower()}"
        _retype(conv, "MatMul", transpose_a=False, transpose_b=False)
        del conv.input[:]
        conv.input.extend([flat.name, matrix.name])
        for previous, node in itertools.pairwise(chain):
            node.input[0] = previous.name
        _new_node(graph_def, output_name, "Reshape", [chain[-1].name, map_shape.name], Tshape=tf.int32.as_datatype_enum)
        rewritten += 1
    return graph_def, rewritten


def _become(node, op: str, inputs, **attrs) -> None:
    """Turn `node` (keeping its name, so its consumers are unchanged) into a float32 `op` of `inputs`."""
    _retype(node, op, **attrs)
    del node.input[:]
    node.input.extend(inputs)


def _placed(graph_def, name: str, op: str, inputs, into=None, **attrs):
    """A new float32 `op` node `name` of `inputs`, or, given `into`, that node turned into it under its own name."""
    if into is None:
        return _new_node(graph_def, name, op, inputs, **attrs)
    _become(into, op, inputs, **attrs)
    return into


def _reshape_node(graph_def, name: str, reference: str, shape, into=None) -> object:
    """A `Reshape` of `reference` to the constant `shape` (`into`: as in `_placed`)."""
    import tensorflow as tf

    shape_node = _const_node(graph_def, f"{name}/shape", shape, np.int32)
    return _placed(graph_def, name, "Reshape", [reference, shape_node.name], into, Tshape=tf.int32.as_datatype_enum)


def _reduction(graph_def, name: str, op: str, reference: str, axes, keep_dims: bool, into=None) -> object:
    """An `op` (`Max`, `Sum`) of `reference` over the constant `axes` (`into`: as in `_placed`)."""
    import tensorflow as tf

    axes_node = _const_node(graph_def, f"{name}/axes", axes, np.int32)
    node = _placed(graph_def, name, op, [reference, axes_node.name], into, Tidx=tf.int32.as_datatype_enum)
    node.attr["keep_dims"].b = keep_dims
    return node


def _pool_window(node, shapes) -> tuple[int, list] | None:
    """(s, [H_out, W_out, C]) of an NHWC float32 pooling `node` whose windows are s x s with stride s
    (`ksize` s or 1) and tile the input exactly (H and W static multiples of s): padding changes nothing then."""
    import tensorflow as tf

    if _data_format(node) != b"NHWC" or node.attr["T"].type != tf.float32.as_datatype_enum \
            or any(r.startswith("^") for r in node.input):
        return None
    strides, ksize = list(node.attr["strides"].list.i), list(node.attr["ksize"].list.i)
    shape = shapes.get(node.name)
    if len(strides) != 4 or strides[0] != 1 or strides[3] != 1 or strides[1] != strides[2] or shape is None \
            or len(shape) != 4 or None in shape[1:]:
        return None
    s = strides[1]
    if ksize not in ([1, s, s, 1], [1, 1, 1, 1]) or _node_name(node.input[0]) not in shapes:
        return None
    in_shape = shapes[_node_name(node.input[0])]
    if None in in_shape[1:] or in_shape[1] != shape[1] * s or in_shape[2] != shape[2] * s:
        return None
    return s, shape[1:]


def pools_as_reshapes_and_reductions(graph_def):
    """`graph_def` with the poolings whose windows tile the input written as reshapes, a slice and reductions.

    - A 1x1 average pooling of stride s (the subsampling before a down-sampling unit's shortcut) takes every
      s-th pixel: `Reshape(x, [-1, H/s, s, W/s, s*C])`, a `Slice` of the first row and the first C channels
      of each pair, and a `Reshape` to `[-1, H/s, W/s, C]`.
    - An s x s max pooling of stride s (the attention mask's down-sampling) is a maximum over each window's
      rows, then over its columns: `Max(Reshape(x, [-1, H/s, s, W/s, s*C]), axis 2)`, then
      `Max(Reshape(., [-1, H/s, W/s, s, C]), axis 3)`.

    Both are exact. Why: oneDNN's pooling kernels (what TensorFlow runs for `AvgPool` and `MaxPool` on
    CPUs with AVX-512 VNNI) cost 85-110 µs a call at batch 1 whatever the width (measured at width 4),
    and one sits on the trunk of every down-sampling unit; a reshape costs nothing and the slice and
    reductions a few µs. (One reduction over both window axes was measured 7% slower at batch 1 and 13% at
    batch 256 than these two.) The last node keeps the pooling's name. Returns `(new_graph_def, number)`.
    """
    import tensorflow as tf

    graph_def = _copy(graph_def)
    shapes = _static_shapes(graph_def)
    rewritten = 0
    for node in list(graph_def.node):
        window = _pool_window(node, shapes) if node.op in ("AvgPool", "MaxPool") else None
        if window is None:
            continue
        s, (h, w, c) = window
        name, source, single = node.name, node.input[0], list(node.attr["ksize"].list.i) == [1, 1, 1, 1]
        if node.op == "AvgPool" and single:
            windows = _reshape_node(graph_def, f"{name}/windows", source, [-1, h, s, w, s * c])
            begin = _const_node(graph_def, f"{name}/begin", [0, 0, 0, 0, 0], np.int32)
            size = _const_node(graph_def, f"{name}/size", [-1, -1, 1, -1, c], np.int32)
            first = _new_node(graph_def, f"{name}/first", "Slice", [windows.name, begin.name, size.name],
                              Index=tf.int32.as_datatype_enum)
            _reshape_node(graph_def, name, first.name, [-1, h, w, c], into=node)
        elif node.op == "MaxPool" and not single:
            windows = _reshape_node(graph_def, f"{name}/windows", source, [-1, h, s, w, s * c])
            row_max = _reduction(graph_def, f"{name}/row_max", "Max", windows.name, [2], keep_dims=False)
            columns = _reshape_node(graph_def, f"{name}/columns", row_max.name, [-1, h, w, s, c])
            _reduction(graph_def, name, "Max", columns.name, [3], keep_dims=False, into=node)
        else:  # an average over whole windows, a max of single pixels: left to the pooling kernels
            continue
        rewritten += 1
    return graph_def, rewritten


def softmaxes_as_exponentials(graph_def):
    """`graph_def` with every float32 `Softmax` written as `Exp(x - Max(x)) / Sum(Exp(x - Max(x)))` over the
    last axis (the same formula, the maximum subtracted as the kernel does). Why: oneDNN's softmax costs
    about 45 µs a call at batch 1 (measured at width 4) for the level attention's 3 x 3 scores and the
    expression head's 8 logits, on the serial end of the network; these four element-wise and reduction
    kernels cost a few µs. Returns `(new_graph_def, number)`."""
    import tensorflow as tf

    graph_def = _copy(graph_def)
    rewritten = 0
    for node in list(graph_def.node):
        if node.op != "Softmax" or node.attr["T"].type != tf.float32.as_datatype_enum \
                or any(r.startswith("^") for r in node.input):
            continue
        name, logits = node.name, node.input[0]
        largest = _reduction(graph_def, f"{name}/largest", "Max", logits, [-1], keep_dims=True)
        shifted = _new_node(graph_def, f"{name}/shifted", "Sub", [logits, largest.name])
        exponentials = _new_node(graph_def, f"{name}/exponentials", "Exp", [shifted.name])
        total = _reduction(graph_def, f"{name}/total", "Sum", exponentials.name, [-1], keep_dims=True)
        _become(node, "RealDiv", [exponentials.name, total.name])
        rewritten += 1
    return graph_def, rewritten


SMALL_PRODUCT = 1 << 14  # the most products per example a batch matrix product may form as a tensor


# How `a @ b` of `[N, M, K]` and `[N, K, P]` runs as a sum of products, by whether each operand is transposed:
# the axis each operand gains and the axis the sum runs over (no operand is moved in memory).
_PRODUCT_AXES = {(False, False): (3, 1, 2), (False, True): (2, 1, 3), (True, False): (3, 2, 1)}


def _untransposed(nodes: dict, reference: str) -> str | None:
    """The input of `reference` when it is a `Transpose` swapping the last two of three axes, else None."""
    node = nodes.get(_node_name(reference))
    if node is None or node.op != "Transpose" or any(r.startswith("^") for r in node.input):
        return None
    order = _constant_value(nodes, node.input[1])
    return node.input[0] if order is not None and list(np.ravel(order)) == [0, 2, 1] else None


def small_batch_matmuls_as_reductions(graph_def):
    """`graph_def` with every float32 rank-3 batch matrix product `[N, M, K] @ [N, K, P]` of static shapes whose
    M * K * P products per example are at most `SMALL_PRODUCT` written as a sum of products: for untransposed
    operands `Sum(ExpandDims(a, 3) * ExpandDims(b, 1), axis 2)`. An operand that is a `Transpose` of its last
    two axes is read untransposed, the other axes chosen to match (`_PRODUCT_AXES`); with both operands
    transposed the product is left alone.

    The level attention's two products (`H Hᵀ`, `[N, 3, 2u] @ [N, 2u, 3]`, and `[N, 3, 3] @ [N, 3, 2u]`) are
    of this kind. Why: oneDNN's batch matrix product costs about 50 µs a call at batch 1 (measured at width
    4), and its transpose 20 µs, on the serial end of the network, for a few thousand multiply-adds. The
    sums run in another order: equal up to float rounding. Returns `(new_graph_def, number)`."""
    import tensorflow as tf

    graph_def = _copy(graph_def)
    shapes = _static_shapes(graph_def)
    nodes = {node.name: node for node in graph_def.node}
    rewritten = 0
    for node in list(graph_def.node):
        if node.op not in ("BatchMatMulV2", "BatchMatMul") or node.attr["T"].type != tf.float32.as_datatype_enum \
                or any(r.startswith("^") for r in node.input):
            continue
        operands, adjoint = list(node.input[:2]), [node.attr["adj_x"].b, node.attr["adj_y"].b]
        for i in range(2):
            inner = _untransposed(nodes, operands[i])
            if inner is not None:
                operands[i], adjoint[i] = inner, not adjoint[i]
        a_shape, b_shape = (shapes.get(_node_name(r)) for r in operands)
        if any(r != _node_name(r) for r in operands) or a_shape is None or b_shape is None \
                or len(a_shape) != 3 or len(b_shape) != 3 or None in a_shape[1:] + b_shape[1:] \
                or tuple(adjoint) not in _PRODUCT_AXES:
            continue  # (an operand that is not a node's first output has no shape recorded here)
        m, k = a_shape[1:][::-1] if adjoint[0] else a_shape[1:]
        p = b_shape[1] if adjoint[1] else b_shape[2]
        if m * k * p > SMALL_PRODUCT:
            continue
        name, (a_axis, b_axis, sum_axis) = node.name, _PRODUCT_AXES[tuple(adjoint)]
        expanded = []
        for i, (reference, axis) in enumerate(zip(operands, (a_axis, b_axis))):
            axis_node = _const_node(graph_def, f"{name}/axis{i}", axis, np.int32)
            expanded.append(_new_node(graph_def, f"{name}/expanded{i}", "ExpandDims", [reference, axis_node.name],
                                      Tdim=tf.int32.as_datatype_enum).name)
        products = _new_node(graph_def, f"{name}/products", "Mul", expanded)
        _reduction(graph_def, name, "Sum", products.name, [sum_axis], keep_dims=False, into=node)
        rewritten += 1
    return graph_def, rewritten


def drop_identities(graph_def, keep: set[str]):
    """`graph_def` without pass-through `Identity` nodes (one data input, no control input), except
    those named in `keep` (e.g. the outputs); their consumers read the Identity's input directly."""
    graph_def = _copy(graph_def)
    nodes = {node.name: node for node in graph_def.node}

    def source(reference: str) -> str:
        node = nodes.get(_node_name(reference))
        while (node is not None and node.op == "Identity" and node.name not in keep and len(node.input) == 1
               and not node.input[0].startswith("^")):
            reference = node.input[0]
            node = nodes.get(_node_name(reference))
        return reference

    for node in graph_def.node:
        for i, reference in enumerate(node.input):
            if reference.startswith("^"):
                node.input[i] = "^" + _node_name(source(reference[1:]))
            else:
                node.input[i] = source(reference)
    return graph_def


def prune(graph_def, output_tensors):
    """Only the nodes that the named output tensors need (through data and control inputs), in graph order."""
    nodes = {node.name: node for node in graph_def.node}
    needed: set[str] = set()
    pending = [_node_name(t) for t in output_tensors]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(_node_name(reference) for reference in nodes[name].input)
    pruned = _copy(graph_def)
    del pruned.node[:]
    pruned.node.extend(node for node in graph_def.node if node.name in needed)
    return pruned


def _copy(graph_def):
    import tensorflow as tf

    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    return copy


def freeze(forward, input_spec) -> FoldedGraph:
    """Trace `forward` (a callable, float32 `[None, 48, 48, 1]` -> dict of tensors) for `input_spec` and
    turn every variable it reads into a constant. Nothing folded yet (`folded == 0`)."""
    import tensorflow as tf

    # TensorFlow's own freezing tool; it lives in a non-public module (no public API does this in TF 2),
    # so a TensorFlow release could move it: tests/test_folded_inference.py fails at once if it does.
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = tf.function(forward).get_concrete_function(input_spec)
    frozen = convert_variables_to_constants_v2(concrete)
    (placeholder,) = frozen.inputs
    names = tf.nest.pack_sequence_as(concrete.structured_outputs, [t.name for t in frozen.outputs])
    return FoldedGraph(frozen.graph.as_graph_def(), placeholder.name, dict(names), 0)


def fold_model(model) -> FoldedGraph:
    """`model`'s inference graph (`model(images, training=False)`, outputs as `named_outputs`), frozen,
    with its batch norms folded into the convolutions before them, the other batch norms as a multiply
    and an add, 1x1 convolutions as matrix products, poolings, softmaxes and small batch matrix products
    without oneDNN's kernels for them, and pass-through nodes dropped."""
    import tensorflow as tf

    from va2att.config import INPUT_SIZE
    from va2att.faces.network_input import inference_forward
    from va2att.serving.signature import IMAGE_INPUT

    spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 1], tf.float32, name=IMAGE_INPUT)
    frozen = freeze(inference_forward(model), spec)
    graph_def, folded = fold_batch_norms(frozen.graph_def)
    graph_def, scaled = scale_and_shift_batch_norms(graph_def)
    graph_def, _ = scales_into_next_convolutions(graph_def)
    graph_def, matmuls = pointwise_convolutions_as_matmuls(graph_def)
    graph_def, _ = pools_as_reshapes_and_reductions(graph_def)
    graph_def, _ = softmaxes_as_exponentials(graph_def)
    graph_def, _ = small_batch_matmuls_as_reductions(graph_def)
    outputs = set(frozen.output_tensors.values())
    graph_def = drop_identities(graph_def, keep={_node_name(t) for t in outputs})
    graph_def = prune(graph_def, outputs)
    return FoldedGraph(graph_def, frozen.input_tensor, frozen.output_tensors, folded, scaled, matmuls)


def folded_forward(model):
    """A concrete function `images -> {output name: float32 tensor}` computing `model`'s inference
    outputs from its folded graph (`fold_model`). It holds no variables: the weights are constants
    in its graph, as of this call. Call it inside a `tf.function` to serve it."""
    return as_function(fold_model(model))


def as_function(graph: FoldedGraph):
    """The concrete function of a `FoldedGraph`: its input tensor in, its named outputs out."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph.graph_def, name=""), [])
    fetches = {name: wrapped.graph.as_graph_element(tensor) for name, tensor in graph.output_tensors.items()}
    return wrapped.prune(feeds=wrapped.graph.as_graph_element(graph.input_tensor), fetches=fetches)


def batch_norms_after_convolutions(graph_def) -> int:
    """How many batch norms in `graph_def` (and its function library) read a convolution's output
    directly or through its `BiasAdd`: what `fold_batch_norms` removes (0 after folding)."""
    count = 0
    for nodes in [list(graph_def.node), *(list(f.node_def) for f in graph_def.library.function)]:
        by_name = {node.name: node for node in nodes}
        for node in nodes:
            if node.op not in BATCH_NORM_OPS or node.attr["is_training"].b:
                continue
            producer = by_name.get(_node_name(node.input[0]))
            if producer is not None and producer.op == "BiasAdd":
                producer = by_name.get(_node_name(producer.input[0]))
            count += producer is not None and producer.op in FOLDABLE_INPUTS
    return count
