"""The 2Att-2Mt network and what trains it: the functional model (`network`), its heads
(`heads`), the Emotion-GCN adjacency (`gcn`), the custom layers (`layers`), losses (`losses`),
metrics (`metrics`) and the size table (`flops`).

    from va2att.model import build_model, VA2AttModel

The two names are imported on first use, so the light submodules (`heads`, `gcn`) load without
TensorFlow.
"""

__all__ = ["VA2AttModel", "build_model"]


def __getattr__(name):
    if name in __all__:
        from va2att.model import network

        return getattr(network, name)
    raise AttributeError(f"module 'va2att.model' has no attribute {name!r}")
