"""The folded inference graph (`va2att.serving.folded_inference`) and the export that serves it: the same outputs
as the Keras model on random and on real faces, no batch norm left after a convolution, fewer ops run."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_MODEL

from va2att.config import ModelConfig
from va2att.faces.network_input import prepare_faces
from va2att.model.network import build_model
from va2att.serving import export, folded_inference, graph_ops
from va2att.serving.signature import SERVING_DEFAULT, SERVING_WHOLE_BATCH

ATOL = 1e-4
VARIANTS = {"default": {}, "blocks0": {"blocks": 0}, "gcn": {"head": "gcn"}}


def trained_like_weights(model, seed=0):
    """Batch-norm statistics, affine weights and biases away from their initial values, as after training
    (with the initial ones a folded kernel equals the original and the test would prove little, and a
    zero bias is an addition TensorFlow's optimizer drops, which a trained model's is not)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        leaf = weight.path.rsplit("/", 1)[-1]
        if leaf == "moving_variance":
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif leaf == "gamma":
            weight.assign(rng.uniform(0.8, 1.25, weight.shape).astype("float32"))
        elif leaf in ("moving_mean", "beta"):
            weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
        elif leaf == "bias":
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))


@pytest.fixture(scope="module")
def real_faces():
    """Aligned crops of the faces MTCNN finds in scikit-image's astronaut and camera photos, and their mirrors."""
    from skimage import data

    from va2att.faces.align import align_detection
    from va2att.faces.detection import FaceDetector
    from va2att.faces.images import from_array

    detector = FaceDetector()
    faces = []
    for pixels in (data.astronaut(), cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB)):
        image = from_array(pixels, order="rgb")
        faces.extend(align_detection(image, found) for found in detector.detect(image))
    assert len(faces) >= 2
    crops = prepare_faces(np.stack(faces))
    return np.concatenate([crops, crops[:, :, ::-1]])


@pytest.fixture(scope="module")
def random_faces():
    return np.random.default_rng(3).integers(0, 256, (6, 48, 48, 1)).astype("float32")


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    """(name, Keras model with trained-like weights, its folded SavedModel folder)."""
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(**TINY_MODEL, **VARIANTS[request.param]))
    trained_like_weights(model)
    path = export.export_saved_model(model, tmp_path_factory.mktemp(request.param) / "va2att")
    return request.param, model, path


def test_folded_export_gives_the_keras_outputs_on_random_and_real_faces(variant, random_faces, real_faces):
    _, model, path = variant
    serve = tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT]
    for images in (random_faces, real_faces):
        expected = {k: v.numpy() for k, v in model(images, training=False).items()}
        served = serve(image=tf.constant(images))
        assert set(served) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(served[name].numpy(), value, atol=ATOL, err_msg=name)
        # Outputs that vary between faces (not saturated), so the comparison can tell graphs apart.
        assert np.ptp(expected["valence"]) > 1e-3


def test_folding_leaves_no_batch_norm_after_a_convolution(variant):
    _, model, path = variant
    spec = tf.TensorSpec([None, 48, 48, 1], tf.float32, name="image")
    frozen = folded_inference.freeze(lambda x: model(x, training=False), spec)
    before = folded_inference.batch_norms_after_convolutions(frozen.graph_def)
    folded = folded_inference.fold_model(model)
    assert before > 0 and folded.folded == before
    assert folded_inference.batch_norms_after_convolutions(folded.graph_def) == 0
    # The same holds for the graph saved in the SavedModel (all its functions).
    assert folded_inference.batch_norms_after_convolutions(
        tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT].graph.as_graph_def()) == 0
    # Batch norms that follow something else (an addition: the pre-activation BN-ReLU) become a
    # multiply and an add, or an add alone: no batch-norm kernel is left.
    assert 0 < folded.scaled < sum(1 for w in model.weights if w.path.endswith("moving_mean"))
    saved = graph_ops.saved_op_counts(path)
    assert not any(op.startswith("FusedBatchNorm") for op in saved)
    assert export.cudnn_only_ops(path) == set()


def test_the_folded_export_runs_far_fewer_ops_than_the_keras_graph(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_model(ModelConfig(**TINY_MODEL))
    trained_like_weights(model)
    keras_graph = export.export_saved_model(model, tmp_path / "keras", fold=False)
    folded = export.export_saved_model(model, tmp_path / "folded")
    before, after = graph_ops.executed_op_counts(keras_graph), graph_ops.executed_op_counts(folded)
    assert sum(after.values()) < 0.5 * sum(before.values())
    # No variable is read: the weights are constants of the graph.
    assert before["ReadVariableOp"] > 0 and after["ReadVariableOp"] == after["VarHandleOp"] == 0
    assert len(tf.saved_model.load(str(folded)).variables) == 0
    # The input checks are still in the served graph.
    assert after["EnsureShape"] == 1 and after["CheckNumerics"] == 1
    # The network once (serving_default also holds it in its CPU chunk loop: va2att.serving.batch_chunks).
    saved_before = graph_ops.saved_op_counts(keras_graph, SERVING_WHOLE_BATCH)
    saved_after = graph_ops.saved_op_counts(folded, SERVING_WHOLE_BATCH)
    assert saved_after["FusedBatchNormV3"] == 0 < saved_before["FusedBatchNormV3"]
    # Every 1x1 convolution runs as a matrix product; the others stay convolutions.
    rewritten = saved_after["MatMul"] - saved_before["MatMul"]
    assert rewritten > 0 and saved_after["Conv2D"] + rewritten == saved_before["Conv2D"]


def _run(graph_def, fetch, feed):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(fetch, {"x:0": feed})


def test_fold_batch_norms_arithmetic_and_what_it_leaves_alone():
    rng = np.random.default_rng(4)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")

        def batch_norm(y, name):
            params = [tf.constant(v.astype("float32")) for v in (
                rng.uniform(0.5, 2, 4), rng.normal(0, 1, 4), rng.normal(0, 1, 4), rng.uniform(0.5, 2, 4))]
            return tf.compat.v1.nn.fused_batch_norm(y, *params[:2], mean=params[2], variance=params[3],
                                                    epsilon=1e-3, is_training=False, name=name)[0]

        kernel = tf.constant(rng.normal(0, 1, (3, 3, 3, 4)).astype("float32"))
        plain = batch_norm(tf.nn.conv2d(x, kernel, 1, "SAME"), "plain")
        with_bias = batch_norm(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), tf.constant([1.0, -2, 3, 0.5])),
                               "with_bias")
        shared = tf.nn.conv2d(x, kernel, 1, "SAME")  # also read by the addition: folding would change it
        tf.identity(batch_norm(shared, "shared_bn") + shared, name="shared")
        tf.identity(batch_norm(tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME")), "after_relu"), name="after_relu_out")
    graph_def = graph.as_graph_def()
    fetch = [plain.name, with_bias.name, "shared:0", "after_relu_out:0"]
    folded_def, folded = folded_inference.fold_batch_norms(graph_def)
    assert folded == 2
    ops = {node.name: node.op for node in folded_def.node}
    assert ops["plain"] == ops["with_bias"] == "BiasAdd"
    assert ops["shared_bn"] == ops["after_relu"] == "FusedBatchNormV3"
    feed = rng.uniform(0, 1, (2, 6, 6, 3)).astype("float32")
    for got, want in zip(_run(folded_def, fetch, feed), _run(graph_def, fetch, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _constant(rng, *shape, low=None):
    if low is not None:
        return tf.constant(rng.uniform(low, 2.0, shape).astype("float32"))
    return tf.constant(rng.normal(0, 1, shape).astype("float32"))


def _inference_batch_norm(rng, y, name, gamma=None):
    channels = y.shape[-1]
    gamma = _constant(rng, channels, low=0.5) if gamma is None else tf.constant(gamma, tf.float32)
    return tf.compat.v1.nn.fused_batch_norm(y, gamma, _constant(rng, channels), mean=_constant(rng, channels),
                                            variance=_constant(rng, channels, low=0.5), epsilon=1e-3,
                                            is_training=False, name=name)[0]


def _same_outputs(graph_def, rewritten_def, fetch, rng):
    feed = rng.uniform(-1, 1, (2, 6, 6, 3)).astype("float32")
    for got, want in zip(_run(rewritten_def, fetch, feed), _run(graph_def, fetch, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_batch_norms_become_scale_and_shift_and_the_scale_moves_into_the_next_convolutions():
    rng = np.random.default_rng(5)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        total = x + 1.0
        # BN-ReLU feeding a 3x3 convolution, and through a max pool and a spatial mean a 1x1 one.
        pre = tf.nn.relu(_inference_batch_norm(rng, total, "moved"))
        direct = tf.nn.conv2d(pre, _constant(rng, 3, 3, 3, 4), 1, "SAME", name="direct")
        pooled = tf.nn.max_pool2d(pre, 2, 2, "VALID")
        pooled = tf.reduce_mean(pooled, axis=[1, 2], keepdims=True)
        through = tf.nn.conv2d(pooled, _constant(rng, 1, 1, 3, 4), 1, "VALID", name="through")
        # A negative scale, and a ReLU also read by an addition: the multiply stays.
        negative = tf.nn.relu(_inference_batch_norm(rng, total, "negative", gamma=[1.0, -0.5, 2.0]))
        tf.nn.conv2d(negative, _constant(rng, 3, 3, 3, 4), 1, "SAME", name="after_negative")
        shared = tf.nn.relu(_inference_batch_norm(rng, total, "shared"))
        tf.identity(tf.nn.conv2d(shared, _constant(rng, 3, 3, 3, 3), 1, "SAME") + shared, name="shared_out")
    graph_def = graph.as_graph_def()
    fetch = [direct.name, through.name, "after_negative:0", "shared_out:0"]

    scaled_def, scaled = folded_inference.scale_and_shift_batch_norms(graph_def)
    assert scaled == 3
    ops = {node.name: node.op for node in scaled_def.node}
    assert ops["moved"] == ops["negative"] == ops["shared"] == "BiasAdd"
    assert not any(op.startswith("FusedBatchNorm") for op in ops.values())
    _same_outputs(graph_def, scaled_def, fetch, rng)

    moved_def, moved = folded_inference.scales_into_next_convolutions(scaled_def)
    assert moved == 1
    reads = {node.name: [folded_inference._node_name(r) for r in node.input] for node in moved_def.node}
    ops = {node.name: node.op for node in moved_def.node}
    assert ops[reads["moved"][0]] != "Mul"  # the add reads the batch norm's input directly
    assert ops[reads["negative"][0]] == ops[reads["shared"][0]] == "Mul"
    _same_outputs(graph_def, moved_def, fetch, rng)


def test_pointwise_convolutions_run_as_matrix_products():
    rng = np.random.default_rng(6)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        fused = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, _constant(rng, 1, 1, 3, 5), 1, "SAME"),
                                          _constant(rng, 5)), name="fused")
        plain = tf.identity(tf.nn.conv2d(fused, _constant(rng, 1, 1, 5, 4), 1, "VALID") + 1.0, name="plain")
        strided = tf.nn.conv2d(x, _constant(rng, 1, 1, 3, 4), 2, "VALID", name="strided")
        spatial = tf.nn.conv2d(x, _constant(rng, 3, 3, 3, 4), 1, "SAME", name="spatial")
        # An attention mask's last convolution: bias, then sigmoid, read by a multiply.
        mask = tf.sigmoid(tf.nn.bias_add(tf.nn.conv2d(x, _constant(rng, 1, 1, 3, 3), 1, "SAME"),
                                         _constant(rng, 3)), name="mask")
        gated = tf.identity((1.0 + mask) * x, name="gated")
    graph_def = graph.as_graph_def()
    fetch = [fused.name, plain.name, strided.name, spatial.name, gated.name]
    rewritten_def, rewritten = folded_inference.pointwise_convolutions_as_matmuls(graph_def)
    assert rewritten == 3
    nodes = {node.name: node for node in rewritten_def.node}
    assert nodes["fused"].op == nodes["mask"].op == "Reshape"  # the bias and activation run before the reshape
    assert nodes[folded_inference._node_name(nodes["fused"].input[0])].op == "Relu"
    assert nodes[folded_inference._node_name(nodes["mask"].input[0])].op == "Sigmoid"
    assert nodes["strided"].op == nodes["spatial"].op == "Conv2D"
    assert sum(node.op == "MatMul" for node in rewritten_def.node) == 3
    _same_outputs(graph_def, rewritten_def, fetch, rng)


def _ops(graph_def) -> dict:
    return {node.name: node.op for node in graph_def.node}


def test_poolings_that_tile_their_input_become_reshapes_slices_and_maxima():
    rng = np.random.default_rng(7)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        tf.nn.avg_pool2d(x, 1, 2, "VALID", name="subsampled")  # a shortcut's subsampling
        tf.nn.avg_pool2d(x, 1, 3, "SAME", name="same")
        tf.nn.max_pool2d(x, 2, 2, "SAME", name="halved")  # a mask's down-sampling
        tf.nn.max_pool2d(x, 3, 3, "VALID", name="thirds")
        tf.nn.avg_pool2d(x, 2, 2, "VALID", name="averaged")  # a true average: left alone
        tf.nn.max_pool2d(x, 3, 2, "SAME", name="overlapping")  # windows overlap: left alone
        tf.nn.max_pool2d(x[:, :5, :5], 2, 2, "SAME", name="untiled")  # 5 is not a multiple of 2
    graph_def = graph.as_graph_def()
    names = ["subsampled", "same", "halved", "thirds", "averaged", "overlapping", "untiled"]
    rewritten_def, rewritten = folded_inference.pools_as_reshapes_and_reductions(graph_def)
    assert rewritten == 4
    ops = _ops(rewritten_def)
    assert [ops[n] for n in names] == ["Reshape", "Reshape", "Max", "Max", "AvgPool", "MaxPool", "MaxPool"]
    assert not any(op in ("AvgPool", "MaxPool") for name, op in ops.items() if name in names[:4])
    _same_outputs(graph_def, rewritten_def, [f"{n}:0" for n in names], rng)


def test_softmaxes_become_exponentials_over_their_sum():
    rng = np.random.default_rng(8)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        scores = tf.nn.softmax(40.0 * tf.reshape(x, [-1, 3]), name="scores")  # large logits: the max is subtracted
    graph_def = graph.as_graph_def()
    rewritten_def, rewritten = folded_inference.softmaxes_as_exponentials(graph_def)
    assert rewritten == 1 and "Softmax" not in _ops(rewritten_def).values()
    assert _ops(rewritten_def)["scores"] == "RealDiv"
    _same_outputs(graph_def, rewritten_def, [scores.name], rng)


def test_small_batch_matrix_products_become_sums_of_products():
    rng = np.random.default_rng(9)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        h = tf.reshape(x, [-1, 6, 18])
        scores = tf.matmul(h, h, transpose_b=True, name="scores")  # [N, 6, 6]: the level attention's H Hᵀ
        attended = tf.matmul(tf.nn.softmax(scores), h, name="attended")  # [N, 6, 18]
        left = tf.matmul(h, _constant(rng, 1, 6, 4), transpose_a=True, name="left")  # [N, 18, 4], adj_x
        # As Keras writes H Hᵀ: a Transpose node, read untransposed.
        spelled = tf.matmul(h, tf.transpose(h, [0, 2, 1]), name="spelled")
        both = tf.matmul(h, tf.reshape(x, [-1, 18, 6]), transpose_a=True, transpose_b=True, name="both")
        large = tf.matmul(tf.reshape(x, [-1, 1, 108]), _constant(rng, 1, 108, 200), name="large")  # 21,600 products
    graph_def = graph.as_graph_def()
    fetch = [scores.name, attended.name, left.name, spelled.name, both.name, large.name]
    rewritten_def, rewritten = folded_inference.small_batch_matmuls_as_reductions(graph_def)
    assert rewritten == 4
    ops = _ops(rewritten_def)
    assert ops["scores"] == ops["attended"] == ops["left"] == ops["spelled"] == "Sum"
    assert ops["both"] == ops["large"] == "BatchMatMulV2"
    spelled_inputs = {_ops(rewritten_def)[folded_inference._node_name(r)] for node in rewritten_def.node
                      if node.name.startswith("spelled/expanded") for r in node.input[:1]}
    assert "Transpose" not in spelled_inputs
    _same_outputs(graph_def, rewritten_def, fetch, rng)


def test_the_served_graph_runs_no_pooling_softmax_or_batch_matrix_product(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_model(ModelConfig(**TINY_MODEL))
    trained_like_weights(model)
    executed = graph_ops.executed_op_counts(export.export_saved_model(model, tmp_path / "va2att"))
    slow = [op for op in executed if any(kind in op for kind in ("Pool", "Softmax", "BatchMatMul"))]
    assert slow == [] and executed["Max"] >= 2 and executed["Exp"] >= 1
