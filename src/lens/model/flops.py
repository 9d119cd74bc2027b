"""MMDiT FLOP counts, for MFU and TFLOP/s reports.

Matmul FLOPs only (2 per multiply-add); norms, RoPE and elementwise work are noise at this size.
Per block and token each stream runs its own QKV (3 D^2), output (D^2) and SwiGLU (3 D H) weights, so a
token costs 2 (4 D^2 + 3 D H) regardless of its stream; joint attention adds 4 T^2 D per block
(QK^T and AV over T = N + S tokens). Modulation is per sample, not per token. For the released shapes
at 1024^2 (4096 image + 300 text tokens) this gives 17.6 TFLOP per image per forward (REFERENCE 11).
"""

from __future__ import annotations


def forward_flops(config, image_tokens: int, text_tokens: int, batch: int = 1) -> float:
    """FLOPs of one denoiser forward for `batch` samples of the given token counts (padded layout)."""
    d = config.num_attention_heads * config.attention_head_dim
    h = config.mlp_hidden_dim or int(d / 3 * 8)
    n_layers = len(config.selected_layer_index)
    t = image_tokens + text_tokens
    per_block = 2 * t * (4 * d * d + 3 * d * h) + 4 * t * t * d + 2 * 2 * 6 * d * d
    embed = 2 * (image_tokens * config.in_channels * d + text_tokens * n_layers * config.enc_hidden_dim * d)
    head = 2 * image_tokens * d * config.patch_size**2 * config.out_channels
    return float(batch * (config.num_layers * per_block + embed + head))


def train_step_flops(config, image_tokens: int, text_tokens: int, batch: int = 1) -> float:
    """Forward + backward (3x forward), the PaLM/torchtitan MFU convention (recompute not counted)."""
    return 3.0 * forward_flops(config, image_tokens, text_tokens, batch)
