"""The Lens denoiser: LensTransformer2DModel and its parts (blocks, attention, RoPE, layouts, FLOPs)."""
