"""Training data sources: one interface (`Source`: parts of `Record`s) over tar shards of images or
features, parquet tables (Hugging Face datasets) and the synthetic world; `open_source` picks one
from `data.shards`. The loader, the eval hooks, `lens prepare` and `lens finetune` read through it.

Submodules are imported explicitly (`lens.source.spec.open_source`, ...) so that this stays light.
"""
