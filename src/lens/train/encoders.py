"""The frozen encoders of training: FLUX.2 VAE (pixels -> latents) and the text LM (captions -> features).

They run under no_grad in eval mode (not inference_mode: their outputs feed modules that save inputs
for backward). The one exception is experiment (c) of the nano issue: `encoders.text_training` =
joint | scratch makes the LM trainable (`train_text`), so `encode_text` keeps its graph while the
trainer's gradients are on. `source="tiny"` builds seeded random ones in-process (the
debug preset, tests); otherwise `source` is a pipeline folder or hub id with vae/, text_encoder/ and
tokenizer/ subfolders (the released Lens layout, or an exported run).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from lens.errors import LensError

log = logging.getLogger("lens.train")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def build_vae(source: str, dtype: torch.dtype):
    if source == "tiny":
        from lens.latents import tiny_flux2_vae

        return tiny_flux2_vae(seed=0)
    from diffusers import AutoencoderKLFlux2

    try:
        return AutoencoderKLFlux2.from_pretrained(source, subfolder="vae", torch_dtype=dtype).eval()
    except (OSError, ValueError) as err:
        raise LensError(
            f"cannot load the VAE from {source}/vae ({err}); set encoders.source to a pipeline folder"
        ) from None


def build_text(source: str, model_cfg, dtype: torch.dtype):
    """(text_encoder, tokenizer), checked against the denoiser's enc_hidden_dim and selected layers."""
    if source == "tiny":
        from lens.text.testing import tiny_gpt_oss, tiny_harmony_tokenizer

        lm = tiny_gpt_oss(
            num_layers=max(model_cfg.selected_layer_index) + 1, hidden_size=model_cfg.enc_hidden_dim, seed=0
        )
        tok = tiny_harmony_tokenizer()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import lens.text.encoder  # noqa: F401  (registers LensGptOssEncoder with transformers)

        try:
            lm = AutoModelForCausalLM.from_pretrained(source, subfolder="text_encoder", dtype=dtype).eval()
            tok = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
        except (OSError, ValueError) as err:
            raise LensError(
                f"cannot load text_encoder/tokenizer from {source} ({err}); set encoders.source to a pipeline folder"
            ) from None
    hidden, layers = lm.config.hidden_size, lm.config.num_hidden_layers
    if hidden != model_cfg.enc_hidden_dim or max(model_cfg.selected_layer_index) >= layers:
        raise LensError(
            f"the text encoder has hidden size {hidden} and {layers} layers, but model.enc_hidden_dim="
            f"{model_cfg.enc_hidden_dim} and model.selected_layer_index={list(model_cfg.selected_layer_index)}: "
            "make them agree (--set model.enc_hidden_dim=... model.selected_layer_index=...)"
        )
    lm.requires_grad_(False)
    return lm, tok


class FrozenEncoders:
    """Holds whichever of the VAE / text encoder a run needs, on `device`, frozen."""

    def __init__(self, cfg, device: torch.device, *, vae: bool = True, text: bool = True):
        self.cfg, self.device = cfg, device
        dtype = _DTYPES[cfg.encoders.dtype] if device.type == "cuda" else torch.float32
        self.layers = tuple(cfg.model.selected_layer_index)
        self.vae = self.codec = self.lm = self.tokenizer = None
        self.text_trained = False
        if vae:
            from lens.latents import LatentCodec

            self.vae = build_vae(cfg.encoders.source, dtype).to(device)
            self.vae.requires_grad_(False)
            self.codec = LatentCodec(self.vae)
        if text:
            self.load_text()

    def load_text(self) -> None:
        if self.lm is None:
            dtype = _DTYPES[self.cfg.encoders.dtype] if self.device.type == "cuda" else torch.float32
            self.lm, self.tokenizer = build_text(self.cfg.encoders.source, self.cfg.model, dtype)
            self.lm.to(self.device)

    def train_text(self, scratch: bool, seed: int) -> torch.nn.Module:
        """Make the LM trainable (re-initialised when `scratch`, seeded); returns it for the optimiser."""
        self.load_text()
        if scratch:
            torch.manual_seed(seed)
            fresh = type(self.lm)(self.lm.config)  # the model class's own initialisation
            self.lm = fresh.to(device=self.device, dtype=next(self.lm.parameters()).dtype)
        self.lm.requires_grad_(True)
        self.text_trained = True
        return self.lm

    def use_text(self, lm, tokenizer) -> None:
        """Encode with a run's own (trained) LM from now on; prepared text features no longer apply."""
        self.lm, self.tokenizer, self.text_trained = lm.to(self.device), tokenizer, True

    def drop_text(self) -> None:
        """Free the LM (feature-shard runs only need it to encode the fixed sample prompts)."""
        self.lm = self.tokenizer = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.no_grad()
    def encode_images(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 128, H/16, W/16) normalised latents, float32."""
        if self.codec is None:
            raise RuntimeError("this run was built without a VAE")
        return self.codec.encode(pixels.to(self.device)).float()

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> Tensor:
        """(B, 128, h, w) -> (B, 3, 16h, 16w) in [0, 1], float32."""
        return (self.codec.decode(latents).float() / 2 + 0.5).clamp(0, 1)

    def encode_text(self, captions: list[str]) -> list[Tensor]:
        """Captions -> one (S_i, L, D) float32 tensor of valid-token features per caption.

        Without gradients, unless the LM trains (`train_text`) and the caller has gradients on.
        """
        if not captions:
            return []
        if self.lm is None:
            raise RuntimeError("this run was built without a text encoder")
        from lens.text.encoder import encode_prompts

        grad = self.text_trained and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            feats, mask = encode_prompts(
                self.lm,
                self.tokenizer,
                captions,
                layers=self.layers,
                max_length=self.cfg.encoders.max_text_tokens,
                device=self.device,
                grad=grad,
            )  # (B, S, L, D), (B, S)
        return [feats[i, mask[i]].float() for i in range(len(captions))]

    def text_places(self, captions: list[str], spans: list) -> list[Tensor]:
        """(S_i, 2) places of the tokens `encode_text` keeps for each caption, from its grounding
        spans (`lens.text.grounding.token_places`; NaN = not grounded, all NaN without spans)."""
        from lens.text.chat import default_template
        from lens.text.grounding import token_places

        if self.tokenizer is None:
            raise RuntimeError("this run was built without a text encoder")
        template = default_template(self.lm, self.tokenizer)
        length = self.cfg.encoders.max_text_tokens
        return [
            token_places(self.tokenizer, template, c, s or (), length).to(self.device)
            for c, s in zip(captions, spans, strict=True)
        ]

    def prompt_places(self, prompts: list[str], grounded: bool) -> list[Tensor] | None:
        """(S_i, 2) places per prompt for a model trained grounded (`model.text_grounding`), as a
        pipeline grounds them: a `GroundedPrompt`'s spans, else the whole prompt at the centre
        (`lens.text.grounding.prompt_spans`); None for a model that is not (the released layout)."""
        if not grounded:
            return None
        from lens.text.grounding import prompt_spans

        return self.text_places(prompts, [prompt_spans(p) for p in prompts])

    def null_text(self) -> Tensor:
        """Zero text tokens: the null condition of caption dropout and of CFG."""
        return torch.zeros(0, len(self.layers), self.cfg.model.enc_hidden_dim, device=self.device)
