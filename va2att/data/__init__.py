"""From a data set on disk to batches: one module per layout (`affectnet`, `affectnet_npy`,
`affwild2`), the layout interface and its registry (`layout`, `layouts`), one preparation work
unit (`work_unit`), preparation into sharded TFRecords (`preparation`, with the record format in
`records`), `--data` resolved to prepared folders (`source`), the tf.data pipeline (`pipeline`)
and the drawn stand-in sets (`synthetic/`).

Imports `va2att.faces`, `va2att.util` and `va2att.config` only. Submodules are imported on use
(`from va2att.data import pipeline`); importing this package loads neither TensorFlow nor MTCNN.
`prepare` is the documented `python -m va2att.data.prepare` command (`va2att.cli.prepare`).
"""
