"""Faces, from a picture to the network's input: reading images under a pixel cap (`images`),
MTCNN detection (`detection`), following faces through video frames (`tracking`), alignment to
the 56 x 56 gray template (`align`) and the network's input conventions: centre crop, flip pairs,
the inference forward (`network_input`).

Imports only `va2att.util` and `va2att.config`; preparation, training, serving and prediction
take their faces from here.
"""
