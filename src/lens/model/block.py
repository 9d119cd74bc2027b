"""One double-stream MMDiT block (REFERENCE section 2). Lens has 48 of these and nothing else.

Image and text streams keep separate weights (modulation, norms, QKV, output projection, MLP) and meet
in ONE joint attention over [image tokens, text tokens], image first.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from lens.model.attention import attention
from lens.model.layers import SwiGLU, expand_to_tokens, modulate
from lens.model.rope import apply_rope


class LensJointAttention(nn.Module):
    """Fused per-stream QKV, per-head QK RMSNorm, RoPE, joint attention, per-stream output projection."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_eps: float = 1e-5):
        super().__init__()
        self.heads = heads
        self.img_qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.txt_qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.norm_q = nn.RMSNorm(head_dim, eps=qk_eps)
        self.norm_k = nn.RMSNorm(head_dim, eps=qk_eps)
        self.norm_added_q = nn.RMSNorm(head_dim, eps=qk_eps)
        self.norm_added_k = nn.RMSNorm(head_dim, eps=qk_eps)
        self.to_out = nn.ModuleList([nn.Linear(heads * head_dim, dim)])
        self.to_add_out = nn.Linear(heads * head_dim, dim)

    def _qkv(self, x: Tensor, proj: nn.Linear, norm_q: nn.RMSNorm, norm_k: nn.RMSNorm):
        # rows of the fused weight are ordered (q, k, v), each (heads, head_dim)
        q, k, v = rearrange(proj(x), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        return norm_q(q), norm_k(k), v

    def forward(self, img: Tensor, txt: Tensor, rope: tuple[Tensor, Tensor], mask) -> tuple[Tensor, Tensor]:
        n_img = img.shape[1]
        iq, ik, iv = self._qkv(img, self.img_qkv, self.norm_q, self.norm_k)
        tq, tk, tv = self._qkv(txt, self.txt_qkv, self.norm_added_q, self.norm_added_k)
        q, k, v = (torch.cat(pair, dim=2) for pair in ((iq, tq), (ik, tk), (iv, tv)))  # (B, H, N+S, D)
        cos, sin = rope
        out = attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, mask)
        out = rearrange(out, "b h t d -> b t (h d)")
        return self.to_out[0](out[:, :n_img]), self.to_add_out(out[:, n_img:])


class LensTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, mlp_hidden: int, eps: float = 1e-6):
        super().__init__()
        self.img_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.txt_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.img_norm1 = nn.RMSNorm(dim, eps=eps)
        self.txt_norm1 = nn.RMSNorm(dim, eps=eps)
        self.attn = LensJointAttention(dim, heads, head_dim)
        self.img_norm2 = nn.RMSNorm(dim, eps=eps)
        self.txt_norm2 = nn.RMSNorm(dim, eps=eps)
        self.img_mlp = SwiGLU(dim, mlp_hidden)
        self.txt_mlp = SwiGLU(dim, mlp_hidden)

    def forward(
        self,
        img: Tensor,  # (B, N, D)
        txt: Tensor,  # (B, S, D)
        temb: Tensor,  # (n_samples, D)
        rope: tuple[Tensor, Tensor],  # cos, sin: (1 | B, 1, N+S, head_dim/2)
        mask=None,
        img_segments: Tensor | None = None,  # (N,) sample index per token, packed sequences only
        txt_segments: Tensor | None = None,  # (S,)
    ) -> tuple[Tensor, Tensor]:
        # (shift, scale, gate) for attention, then for the MLP; each (B, 1 | T, D)
        i_sh1, i_sc1, i_g1, i_sh2, i_sc2, i_g2 = expand_to_tokens(self.img_mod(temb), img_segments).chunk(
            6, -1
        )
        t_sh1, t_sc1, t_g1, t_sh2, t_sc2, t_g2 = expand_to_tokens(self.txt_mod(temb), txt_segments).chunk(
            6, -1
        )

        img_attn, txt_attn = self.attn(
            modulate(self.img_norm1(img), i_sh1, i_sc1),
            modulate(self.txt_norm1(txt), t_sh1, t_sc1),
            rope,
            mask,
        )
        img = img + i_g1 * img_attn
        txt = txt + t_g1 * txt_attn

        img = img + i_g2 * self.img_mlp(modulate(self.img_norm2(img), i_sh2, i_sc2))
        txt = txt + t_g2 * self.txt_mlp(modulate(self.txt_norm2(txt), t_sh2, t_sc2))
        return img, txt
