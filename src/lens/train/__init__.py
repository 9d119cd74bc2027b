"""Training engine: configs and presets, samples from a data source (`lens.source`), buckets, packing
and the stateful loader, flow-matching objective, the starting denoiser, FSDP2 / activation
checkpointing / compile from outside the model, DCP checkpoints, metrics, sample grids and evaluation
hooks. `lens prepare` is `lens.featurise`, `lens export` is `lens.export`. See docs/training.md.

Submodules are imported explicitly so that `import lens.train` stays free of torch.
"""
