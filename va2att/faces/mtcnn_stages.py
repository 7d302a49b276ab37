"""MTCNN's stages as prediction runs them: the package's three stages with their networks compiled, and a
first stage that proposes given boxes instead of searching the picture.

The `mtcnn` package (pinned to 1.0.x in setup.cfg) runs its networks eagerly, layer by layer, and
spends most of a call on per-layer Python. `compiled_stages` gives RNet and ONet a `tf.function`
with a shape-free signature (one trace serves every batch of candidates), and resizes the picture
to every level of PNet's pyramid and runs PNet on each in one compiled call (one trace per number
of levels), whose levels TensorFlow runs side by side. And the
package hands every stage the normalised picture as a NumPy array, which TensorFlow converted
again for each pyramid level and each batch of patches (six copies of a float64 picture a search):
here it is converted once a search and the same tensor goes to every stage. The operations and
their inputs are the package's, so the outputs are its own.

`GivenProposals` takes the place of PNet and RNet when where the faces are is roughly known
already (a tracked face in the next video frame): ONet alone refines the given boxes into faces,
their five points and confidences, exactly as it refines RNet's boxes in a search, and a box it
does not confirm (confidence below its threshold) gives no face.
"""

from __future__ import annotations

import numpy as np


def _compiled_stage(stage_class, patch: int | None):
    """An instance of one of mtcnn's stage classes whose network runs as a tf.function.

    `patch` is the square input side of the network (RNet 24, ONet 48), None for the fully
    convolutional PNet, which takes pyramid levels of any size.
    """
    import tensorflow as tf

    stage = stage_class()
    network = stage._model
    spec = tf.TensorSpec([None, patch, patch, 3], tf.float32)
    stage._model = tf.function(lambda x: network(x, training=False), input_signature=[spec])
    return stage


class _PictureTensor:
    """The normalised picture `detect_faces` hands to every stage, converted to a tensor once for all of them."""

    def __init__(self):
        self._array = self._tensor = None

    def __call__(self, images):
        if images is not self._array:
            import tensorflow as tf

            self._array, self._tensor = images, tf.convert_to_tensor(images)  # same dtype (float64): same results
        return self._tensor


class _SharedPicture:
    """A stage that receives the picture as the tensor of `picture` instead of a NumPy array."""

    def __init__(self, stage, picture: _PictureTensor):
        self.stage, self.picture = stage, picture
        self.id, self.name = stage.id, stage.name  # as the package's stages (MTCNN.get_stage)

    def __call__(self, images_normalized=None, **kwargs):
        return self.stage(images_normalized=self.picture(images_normalized), **kwargs)


def _pyramid_pnet():
    """mtcnn's PNet stage with every level of the pyramid resized and searched in one compiled call.

    The package resizes the picture to each level and runs PNet on it one level after another, an
    eager resize and a network call each; here one `tf.function` (one per number of levels) does all
    of them, so TensorFlow runs the levels side by side on its inter-op threads. The same operations
    on the same inputs (area resizing of the picture's tensor to the package's level sizes), so the
    same proposals; the rest of `__call__` is mtcnn 1.0's `StagePNet.__call__`, step by step.
    """
    import tensorflow as tf
    from mtcnn.stages.stage_pnet import StagePNet
    from mtcnn.utils.bboxes import (
        generate_bounding_box,
        resize_to_square,
        smart_nms_from_bboxes,
        upscale_bboxes,
    )
    from mtcnn.utils.images import build_scale_pyramid

    class PyramidPNet(StagePNet):
        def __init__(self):
            super().__init__()
            self._pyramids = {}  # number of levels -> tf.function

        def _pyramid(self, levels: int):
            if levels not in self._pyramids:
                network = self._model
                spec = [tf.TensorSpec([None, None, None, 3], tf.float64), tf.TensorSpec([levels, 2], tf.int32)]

                @tf.function(input_signature=spec)
                def run(image, sizes):
                    return [network(tf.image.resize(image, sizes[i], method=tf.image.ResizeMethod.AREA),
                                    training=False) for i in range(levels)]

                self._pyramids[levels] = run
            return self._pyramids[levels]

        def __call__(self, images_normalized, images_oshapes, min_face_size=20, min_size=12, scale_factor=0.709,
                     threshold_pnet=0.6, nms_pnet1=0.5, nms_pnet2=0.7, **kwargs):
            scales_groups = [build_scale_pyramid(shape[1], shape[0], min_face_size=min_face_size,
                                                 scale_factor=scale_factor) for shape in images_oshapes]
            scales = scales_groups[int(np.argmax([x.shape[0] for x in scales_groups]))]
            batch_size = images_normalized.shape[0]
            shape = np.asarray(images_normalized.shape[-3:-1])
            # The level sizes as tf.image.resize makes them of the package's float sizes.
            sizes = tf.stack([tf.convert_to_tensor(shape * scale, tf.int32) for scale in scales])
            pnet_result = self._pyramid(len(scales))(images_normalized, sizes) if len(scales) else []
            proposals = [generate_bounding_box(r[0], r[1], threshold_pnet) for r in pnet_result]
            upscaled = [upscale_bboxes(b, np.asarray([s] * batch_size)) for b, s in zip(proposals, scales)]
            kept = [smart_nms_from_bboxes(b, threshold=nms_pnet1, method="union", initial_sort=False) for b in upscaled]
            bboxes_batch = np.concatenate(kept, axis=0) if len(kept) > 0 else np.empty((0, 6))
            bboxes_batch = smart_nms_from_bboxes(bboxes_batch, threshold=nms_pnet2, method="union", initial_sort=True)
            return resize_to_square(bboxes_batch)

    return PyramidPNet()


def compiled_stages() -> list:
    """mtcnn's three stages (PNet, RNet, ONet), each network compiled once, sharing one tensor of the picture."""
    from mtcnn.stages.stage_onet import StageONet
    from mtcnn.stages.stage_rnet import StageRNet

    picture = _PictureTensor()
    stages = [_pyramid_pnet(), _compiled_stage(StageRNet, 24), _compiled_stage(StageONet, 48)]
    return [_SharedPicture(stage, picture) for stage in stages]


class GivenProposals:
    """A first MTCNN stage that proposes the boxes passed to `detect_faces` as `proposals=`.

    `proposals`: array (n, 4) of x1, y1, x2, y2 in the searched picture's pixels; each is made
    square about its centre (as RNet's boxes are before ONet) and given confidence 1.
    """

    id, name = 0, "Given proposals"  # as the package's stages (MTCNN.get_stage)

    def __call__(self, images_normalized=None, bboxes_batch=None, proposals=None, **kwargs):
        from mtcnn.utils.bboxes import resize_to_square

        boxes = np.asarray(proposals, np.float64).reshape(-1, 4)
        rows = np.concatenate([np.zeros((len(boxes), 1)), boxes, np.ones((len(boxes), 1))], axis=1)
        return resize_to_square(rows)
