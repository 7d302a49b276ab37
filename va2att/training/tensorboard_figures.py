"""TensorBoard beyond scalars: validation faces with their true and predicted valence/arousal, and
the validation circumplex, once per epoch; and one learning-rate scalar instead of two.

`ValidationFigures` keeps a fixed sample of validation faces (the first `sample` of the validation
dataset, taken once) and after every epoch writes two images under `RUN_DIR/logs/figures`:
`faces` (the first `faces` faces, each titled with true and predicted V/A) and `circumplex`
(`va2att.evaluation.plots.circumplex_figure` of the sample, truth joined to prediction). `RunTensorBoard` is
Keras's TensorBoard callback without the `lr` scalar that `LearningRateControl` adds to the logs
for history.csv (Keras already logs the optimizer's rate as `learning_rate`).
"""

from __future__ import annotations

import io

import keras
import numpy as np

FIGURES_DIR = "figures"


class RunTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` without the duplicate `lr` scalar."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {k: v for k, v in (logs or {}).items() if k != "lr"})


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buffer.getvalue()


def faces_figure(images, true_v, true_a, pred_v, pred_a, title: str = ""):
    """A row of faces, each titled `true V +0.42 A -0.10` / `pred V +0.38 A -0.02`."""
    from matplotlib.figure import Figure

    n = len(images)
    fig = Figure(figsize=(1.9 * max(n, 1), 2.5), dpi=100)
    for i in range(n):
        ax = fig.add_subplot(1, n, i + 1)
        ax.imshow(np.asarray(images[i]).reshape(images[i].shape[0], images[i].shape[1]), cmap="gray", vmin=0,
                  vmax=255)
        ax.set_axis_off()
        ax.set_title(f"true V {true_v[i]:+.2f} A {true_a[i]:+.2f}\npred V {pred_v[i]:+.2f} A {pred_a[i]:+.2f}",
                     fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


class ValidationFigures(keras.callbacks.Callback):
    """Validation faces and circumplex in TensorBoard after every epoch (see module doc).

    Args:
        dataset: the validation `tf.data.Dataset` of `(images, {"valence", "arousal", ...}[, weights])`.
        log_dir: str or Path, where the event file goes (`RUN_DIR/logs/figures`).
        faces: int, faces shown with their values.
        sample: int, faces on the circumplex (up to 200 are drawn as truth-to-prediction lines).
    """

    def __init__(self, dataset, log_dir, faces: int = 8, sample: int = 200):
        super().__init__()
        self.log_dir = str(log_dir)
        self.faces = faces
        images, valence, arousal = [], [], []
        for element in dataset:
            x, labels = element[0], element[1]
            if not isinstance(labels, dict) or not {"valence", "arousal"} <= set(labels):
                break
            images.append(np.asarray(x, np.float32))
            valence.append(np.asarray(labels["valence"], np.float32).reshape(-1))
            arousal.append(np.asarray(labels["arousal"], np.float32).reshape(-1))
            if sum(len(b) for b in images) >= sample:
                break
        self.images = np.concatenate(images)[:sample] if images else None
        self.valence = np.concatenate(valence)[:sample] if images else None
        self.arousal = np.concatenate(arousal)[:sample] if images else None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from va2att.evaluation.plots import circumplex_figure

        if self.images is None or not len(self.images):
            return
        outputs = self.model(self.images, training=False)
        if not isinstance(outputs, dict) or not {"valence", "arousal"} <= set(outputs):
            return
        pred_v = np.asarray(outputs["valence"], np.float32).reshape(-1)
        pred_a = np.asarray(outputs["arousal"], np.float32).reshape(-1)
        k = min(self.faces, len(self.images))
        faces = faces_figure(self.images[:k], self.valence, self.arousal, pred_v, pred_a,
                             title=f"epoch {epoch + 1}: validation faces")
        circle = circumplex_figure(pred_v, pred_a, self.valence, self.arousal,
                                   title=f"epoch {epoch + 1}: {len(pred_v)} validation faces, true (rings) -> predicted")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, fig in (("faces", faces), ("circumplex", circle)):
                image = tf.image.decode_png(_png(fig), channels=3)[None]
                tf.summary.image(name, image, step=epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
