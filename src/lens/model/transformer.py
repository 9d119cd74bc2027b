"""LensTransformer2DModel: the 48-block double-stream MMDiT denoiser of Lens (REFERENCE sections 2-3).

Any size is a config: the default is the released 4.1B model (4,104,225,152 parameters); the same
class serves a 1.2B ablation model and few-million-parameter test and nano models. Inputs are latent
tokens (see `lens.latents`), multi-layer LM features and sigma; the output is the velocity
`noise - x0` for the image tokens. Parallelism, compile and checkpoint policies are applied from
outside (`lens.train.parallelize`); this file holds only the math.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from lens.errors import LensError
from lens.model.block import LensTransformerBlock
from lens.model.layers import LensTimestepEmbedding, OutputNorm
from lens.model.layout import Pack, SequenceLayout, batch_layout, pack_layout
from lens.model.weights import check_compatible, safetensors_shapes, weight_files

POS_EMBEDS = ("rope", "rope+sincos")


def check_places(places: Tensor, text_shape: tuple[int, int]) -> None:
    """encoder_places must be (B, S, 2) image fractions in [0, 1], NaN for ungrounded tokens."""
    if tuple(places.shape) != (*text_shape, 2):
        raise LensError(
            f"encoder_places must be (B, S, 2) = {(*text_shape, 2)} (x, y) places, NaN where "
            f"a text token is not grounded, got {tuple(places.shape)}"
        )
    known = places[~places.isnan()]
    if known.numel() and not bool(((known >= 0) & (known <= 1)).all()):
        raise LensError(
            f"encoder_places are (x, y) fractions of the image width and height in [0, 1] (not pixels "
            f"or tokens), got values from {known.min().item():g} to {known.max().item():g}"
        )


class LensTransformer2DModel(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Double-stream MMDiT over FLUX.2 latent tokens conditioned on multi-layer LM features.

    Args:
        patch_size: latent patch size (2); tokens carry in_channels = 32 * 2 * 2 = 128 values.
        in_channels: channels of an input token (128).
        out_channels: latent channels predicted per pixel of the latent (32); output tokens carry
            out_channels * patch_size**2 values.
        num_layers: number of double-stream blocks (48).
        attention_head_dim: per-head width (64); must equal sum(axes_dims_rope).
        num_attention_heads: heads (24); width = heads * head_dim (1536).
        enc_hidden_dim: hidden size of the text LM (2880 for GPT-OSS-20B).
        axes_dims_rope: rotary dims per (frame, row, column) axis.
        gate_mlp, rms_norm, multi_layer_encoder_feature: released architecture flags; only True exists.
        selected_layer_index: LM layers whose outputs are the text features (one RMSNorm each).
        inner_dim: optional, must equal heads * head_dim (the released config states it).
        mlp_hidden_dim: SwiGLU hidden width; default int(width / 3 * 8) (4096).
        rope_theta: RoPE base (10000).
        pos_embed: "rope" (Lens, the default: rotary positions only) or "rope+sincos" (not in Lens:
            a parameter-free 2-D sin/cos embedding of each image token's place added to the image
            tokens after `img_in`; same parameters and state dict).
        text_grounding: not in Lens (False, the default): the model trained with grounded captions
            (`encoder_places`), so pipelines ground every prompt (`lens.text.grounding`); no
            parameter changes.

    `PeftAdapterMixin` (as on diffusers' own transformers) adds LoRA adapters: `add_adapter`,
    `load_lora_adapter`, `fuse_lora`, `unload_lora`; targets and files are in `lens.lora`.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["LensTransformerBlock"]
    _repeated_blocks = ["LensTransformerBlock"]
    _skip_layerwise_casting_patterns = ["txt_norm", "norm"]

    @register_to_config
    def __init__(
        self,
        patch_size: int = 2,
        in_channels: int = 128,
        out_channels: int = 32,
        num_layers: int = 48,
        attention_head_dim: int = 64,
        num_attention_heads: int = 24,
        enc_hidden_dim: int = 2880,
        axes_dims_rope: tuple[int, ...] = (8, 28, 28),
        gate_mlp: bool = True,
        rms_norm: bool = True,
        multi_layer_encoder_feature: bool = True,
        selected_layer_index: tuple[int, ...] = (5, 11, 17, 23),
        inner_dim: int | None = None,
        mlp_hidden_dim: int | None = None,
        rope_theta: float = 10000.0,
        pos_embed: str = "rope",
        text_grounding: bool = False,
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        if inner_dim is not None and inner_dim != dim:
            raise LensError(f"inner_dim={inner_dim} but num_attention_heads * attention_head_dim = {dim}")
        if sum(axes_dims_rope) != attention_head_dim or any(d % 2 for d in axes_dims_rope):
            raise LensError(
                f"axes_dims_rope {list(axes_dims_rope)} must be even and sum to {attention_head_dim}"
            )
        if not (gate_mlp and rms_norm and multi_layer_encoder_feature):
            raise LensError("only gate_mlp, rms_norm and multi_layer_encoder_feature = true exist in Lens")
        if pos_embed not in POS_EMBEDS:
            raise LensError(f"pos_embed must be one of {', '.join(POS_EMBEDS)}, got {pos_embed!r}")
        if pos_embed == "rope+sincos" and dim % 4:
            raise LensError(f"pos_embed='rope+sincos' needs a width divisible by 4, got {dim}")
        if not selected_layer_index:
            raise LensError("selected_layer_index must name at least one LM layer")
        self.inner_dim = dim
        self.gradient_checkpointing = False

        # 1. timestep embedding (no pooled text, no guidance embedding)
        self.time_text_embed = LensTimestepEmbedding(dim)
        # 2. text input: one RMSNorm per selected LM layer, concatenated, projected
        self.txt_norm = nn.ModuleList(nn.RMSNorm(enc_hidden_dim, eps=1e-5) for _ in selected_layer_index)
        self.txt_in = nn.Linear(enc_hidden_dim * len(selected_layer_index), dim)
        # 3. image input
        self.img_in = nn.Linear(in_channels, dim)
        # 4. double-stream blocks
        hidden = mlp_hidden_dim or int(dim / 3 * 8)
        self.transformer_blocks = nn.ModuleList(
            LensTransformerBlock(dim, num_attention_heads, attention_head_dim, hidden)
            for _ in range(num_layers)
        )
        # 5. output: adaptive LayerNorm + projection back to latent patches
        self.norm_out = OutputNorm(dim)
        self.proj_out = nn.Linear(dim, patch_size * patch_size * out_channels)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, allow_pickle: bool = False, **kwargs):
        """diffusers' from_pretrained, after checking local weights are safetensors and match the config."""
        folder = Path(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        if folder.is_dir():
            files = weight_files(folder, allow_pickle)
            if files:
                config = cls.load_config(folder)
                check_compatible(cls.expected_shapes(config), safetensors_shapes(files), str(folder))
        kwargs.setdefault("use_safetensors", not allow_pickle)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def expected_shapes(cls, config: dict) -> dict[str, tuple[int, ...]]:
        """State-dict key -> shape for a config, built on the meta device (no memory)."""
        with torch.device("meta"):
            model = cls.from_config(config)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    @classmethod
    def from_single_file(cls, path: str | os.PathLike, config: dict | None = None, torch_dtype=None):
        """Load the single-file repack (e.g. `lens_bf16.safetensors`, diffusers key names)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise LensError(f"{path} does not exist; pass the path of lens_bf16.safetensors")
        if path.suffix != ".safetensors":  # never unpickle: a .bin/.ckpt can run arbitrary code
            raise LensError(
                f"{path}: single-file loading reads safetensors only (pickle checkpoints can run "
                "arbitrary code); convert the checkpoint to safetensors first"
            )
        if config is None:  # a config.json beside the file, else the released 4.1B defaults
            config = cls.load_config(path.parent) if (path.parent / "config.json").exists() else {}
        check_compatible(cls.expected_shapes(config), safetensors_shapes([path]), str(path))
        with torch.device("meta"):
            model = cls.from_config(config)
        model.load_state_dict(load_file(str(path)), strict=True, assign=True)
        return model.to(torch_dtype) if torch_dtype is not None else model

    # ------------------------------------------------------------------ attention
    def set_attention_backend(self, backend: str) -> None:
        """Only "native" (torch SDPA; packs choose theirs with forward's `attention_kernel`). The blocks
        call `lens.model.attention`, not diffusers' attention dispatcher, so any other backend would be
        silently ignored: refuse it."""
        if not isinstance(backend, str) or backend.lower() != "native":
            raise LensError(
                f"attention backend {backend!r} is not available for LensTransformer2DModel: its attention "
                'is torch\'s scaled_dot_product_attention ("native"), which picks the flash / '
                "memory-efficient / cuDNN kernel itself; choose one with torch.nn.attention.sdpa_kernel"
            )

    # ------------------------------------------------------------------ forward
    @property
    def compute_dtype(self) -> torch.dtype:
        """The activations' dtype: img_in's weights, unless layerwise casting stores them in another
        dtype (float8) and upcasts each layer to its hook's compute dtype. Read from img_in rather than
        `self.dtype` so that FSDP's unsharded mixed-precision weights decide during training."""
        registry = getattr(self.img_in, "_diffusers_hook", None)
        hook = registry.get_hook("layerwise_casting") if registry is not None else None
        return hook.compute_dtype if hook is not None else self.img_in.weight.dtype

    def embed_text(self, encoder_hidden_states: Tensor) -> Tensor:
        """(B, S, L, enc_dim) selected LM layers -> (B, S, width)."""
        normed = [norm(encoder_hidden_states[:, :, i]) for i, norm in enumerate(self.txt_norm)]
        return self.txt_in(torch.cat(normed, dim=-1))

    def forward(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | list[Tensor] | tuple[Tensor, ...],
        timestep: Tensor,
        image_grid: tuple[int, int] | None = None,
        encoder_attention_mask: Tensor | None = None,
        pack: Pack | None = None,
        return_dict: bool = True,
        attention_kernel: str = "auto",
        encoder_places: Tensor | None = None,
    ):
        """Predict the velocity for image tokens.

        Args:
            hidden_states: (B, N, in_channels) image tokens, row-major over an (h, w) latent grid.
            encoder_hidden_states: (B, S, L, enc_hidden_dim) text features of the L selected LM layers
                (or a list of L tensors (B, S, enc_hidden_dim)); S may be 0 (unconditional branch).
            timestep: (B,) sigma in [0, 1] (one per sample; per pack sample when packed).
            image_grid: (h, w) with h * w == N, for a padded batch.
            encoder_attention_mask: (B, S) bool, True for real text tokens; None when none is padded.
            pack: a `Pack` describing a packed row (B == 1, image_grid and mask unused).
            attention_kernel: how a pack attends (`lens.model.attention.pack_kernel`): "auto"
                (FlexAttention on CUDA, SDPA elsewhere), "sdpa" (dense (T, T) mask) or "flex"
                (`BlockMask`; forward only on CPU). A padded batch always uses SDPA.
            encoder_places: not in Lens (None, the default, is the released layout): (B, S, 2) float
                (x, y) image fractions at which text tokens are grounded (the centre of the object
                their phrase names), NaN for tokens that are not (`lens.model.rope.grounded_text_positions`).
        Returns:
            (B, N, patch_size**2 * out_channels) velocity, wrapped in Transformer2DModelOutput if return_dict.
        """
        if isinstance(encoder_hidden_states, (list, tuple)):
            encoder_hidden_states = torch.stack(list(encoder_hidden_states), dim=2)
        layout = self._layout(
            hidden_states,
            encoder_hidden_states,
            timestep,
            image_grid,
            encoder_attention_mask,
            pack,
            attention_kernel,
            encoder_places,
        )
        dtype = self.compute_dtype
        timestep = timestep.reshape(-1).expand(hidden_states.shape[0]) if timestep.numel() == 1 else timestep

        temb = self.time_text_embed(timestep, dtype)  # (n, D)
        img = self.img_in(hidden_states.to(dtype))  # (B, N, D)
        if layout.img_absolute is not None:
            img = img + layout.img_absolute.to(dtype)  # (N, D) absolute places (pos_embed="rope+sincos")
        txt = self.embed_text(encoder_hidden_states.to(dtype))  # (B, S, D)

        args = (temb, layout.rope, layout.mask, layout.img_segments, layout.txt_segments)
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                img, txt = self._gradient_checkpointing_func(block, img, txt, *args)
            else:
                img, txt = block(img, txt, *args)

        out = self.proj_out(self.norm_out(img, temb, layout.img_segments))
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    def _layout(
        self, x: Tensor, enc: Tensor, timestep: Tensor, grid, mask, pack, kernel, places=None
    ) -> SequenceLayout:
        """Validate shapes at the boundary and build RoPE tables, mask and segments."""
        cfg = self.config
        if x.ndim != 3 or x.shape[-1] != cfg.in_channels:
            raise LensError(f"hidden_states must be (B, N, {cfg.in_channels}) tokens, got {tuple(x.shape)}")
        n_layers = len(cfg.selected_layer_index)
        if enc.ndim != 4 or enc.shape[2:] != (n_layers, cfg.enc_hidden_dim) or enc.shape[0] != x.shape[0]:
            raise LensError(
                f"encoder_hidden_states must be (B={x.shape[0]}, S, {n_layers}, {cfg.enc_hidden_dim}), got {tuple(enc.shape)}"
            )
        if places is not None:
            check_places(places, tuple(enc.shape[:2]))
        theta, axes = cfg.rope_theta, tuple(cfg.axes_dims_rope)
        absolute = self.inner_dim if cfg.pos_embed == "rope+sincos" else 0
        if pack is not None:
            if x.shape[0] != 1 or x.shape[1] != pack.image_tokens or enc.shape[1] != pack.text_tokens:
                raise LensError(
                    f"packed inputs must be (1, {pack.image_tokens}, C) image and (1, {pack.text_tokens}, L, D) "
                    f"text tokens for this Pack, got {tuple(x.shape)} and {tuple(enc.shape)}"
                )
            if timestep.numel() != len(pack.image_grids):
                raise LensError(
                    f"a pack of {len(pack.image_grids)} samples needs as many timesteps, got {timestep.numel()}"
                )
            return pack_layout(
                pack, axes, theta, x.device, absolute, kernel, None if places is None else places[0]
            )
        if kernel not in ("auto", "sdpa"):
            raise LensError(f"attention_kernel={kernel!r} is for packs; a padded batch attends with SDPA")
        if grid is None or len(grid) != 2 or grid[0] * grid[1] != x.shape[1]:
            raise LensError(f"image_grid (h, w) with h * w == {x.shape[1]} is required, got {grid}")
        if timestep.numel() not in (1, x.shape[0]):
            raise LensError(f"timestep must hold 1 or B={x.shape[0]} values, got {timestep.numel()}")
        if mask is not None and tuple(mask.shape) != tuple(enc.shape[:2]):
            raise LensError(
                f"encoder_attention_mask must be (B, S) = {tuple(enc.shape[:2])}, got {tuple(mask.shape)}"
            )
        return batch_layout(tuple(grid), mask, enc.shape[1], axes, theta, x.device, absolute, places)
