"""Training engine: configs and presets, data (buckets, packing, stateful loader), flow-matching
objective, FSDP2 / activation checkpointing / compile from outside the model, DCP checkpoints,
metrics, sample grids, evaluation hooks, export and feature preparation. See docs/training.md.

Submodules are imported explicitly so that `import lens.train` stays free of torch.
"""
