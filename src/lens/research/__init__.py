"""Research diagnostics and experiments on trained models, kept out of the product path (`lens eval
probe | x0 | colour-share | text-gain | object-gain`, `lens nano captions-experiment | concept-*`):

- `lens.research.probes`: held-out world scenes, the colour / shape-swap probes and the x0-by-sigma grid.
- `lens.research.colour_share`: how much of a colour token's text feature its colour word decides.
- `lens.research.text_gain`: the `val-loss` hook recomputed for saved checkpoints.
- `lens.research.object_gain`: the caption's gain on object tokens vs background tokens.
- `lens.research.captions`: the dense / brief / mixed caption-policy experiment.
- `lens.research.new_concept`: a crescent, the shape the world lacks, for LoRA fine-tuning demos.

docs/nano-experiments.md reports what they found.
"""
