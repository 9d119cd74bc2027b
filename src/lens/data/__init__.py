"""Lens-800M style data curation: ingest, nine-stage filtering, dense recaptioning.

images ──ingest──► shards ──filter──► shards ──caption──► captioned shards (ready for `lens prepare`)

Every step reads and writes WebDataset shards (see `lens.data.sample` for the sample format), works
on deterministic work units so `--shard i/N` splits it across machines, and writes per-unit stats that
`lens.data.report` merges into `report.json` / `report.md`. See docs/data.md.
"""
