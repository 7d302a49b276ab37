"""Training: the loop (`trainer`), the callbacks that commit each epoch (`callbacks`), the
learning-rate schedules (`schedules`), batch-norm statistics recomputed before validation
(`precise_batch_norm`), several replicas or workers (`distribute`, `multiworker`), what the
console and TensorBoard show (`console`, `tensorboard_figures`) and the closing advice (`trend`).
"""
