"""MTCNN's stages as prediction runs them: the package's three stages with their networks compiled, and a
first stage that proposes given boxes instead of searching the picture.

The `mtcnn` package (pinned to 1.0.x in setup.cfg) runs its networks eagerly, layer by layer, and
spends most of a call on per-layer Python. `compiled_stages` gives each network a `tf.function`
with a shape-free signature: one trace serves every picture size and batch of candidates. And the
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


def compiled_stages() -> list:
    """mtcnn's three stages (PNet, RNet, ONet), each network compiled once, sharing one tensor of the picture."""
    from mtcnn.stages.stage_onet import StageONet
    from mtcnn.stages.stage_pnet import StagePNet
    from mtcnn.stages.stage_rnet import StageRNet

    picture = _PictureTensor()
    stages = [_compiled_stage(StagePNet, None), _compiled_stage(StageRNet, 24), _compiled_stage(StageONet, 48)]
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
