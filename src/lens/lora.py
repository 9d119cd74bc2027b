"""LoRA on the denoiser, through peft and diffusers' own LoRA machinery.

- Targets: Lens's blocks fuse q, k and v per stream (`attn.img_qkv`, `attn.txt_qkv`), so the default
  adapter covers those, the attention outputs (`attn.to_out.0`, `attn.to_add_out`) and both streams'
  SwiGLU linears (`w1`, `w2`, `w3`). The modulation linears (`img_mod.1`, `txt_mod.1`) are off by
  default: they map the timestep embedding to every block's shift/scale/gate, so an adapter there
  changes how the whole network responds to sigma, not what it draws.
- Files: diffusers' layout, `pytorch_lora_weights.safetensors` with `transformer.`-prefixed peft keys
  (`transformer.transformer_blocks.0.attn.img_qkv.lora_A.weight`) and the adapter's `LoraConfig` in the
  safetensors header (`lora_adapter_metadata`), so rank and alpha travel with the weights. Safetensors
  only: a pickle file is refused before anything reads it.
- `LensLoraLoaderMixin` gives `LensPipeline` diffusers' `load_lora_weights`, `unload_lora_weights`,
  `fuse_lora` / `unfuse_lora`, `set_adapters`, `save_lora_weights`, for its one denoiser `transformer`.
  Loading checks every key and shape against the denoiser first (`lens.model.weights`): peft alone
  only warns about keys it cannot place, which would leave part of an adapter silently unused.

peft is imported inside the functions that need it, so `import lens.pipeline` does not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE, LoraBaseMixin
from torch import nn

from lens.errors import LensError
from lens.model.weights import check_lora_state_dict, lora_file, read_lora_file

TRANSFORMER_NAME = "transformer"  # the one LoRA-loadable component, and the key prefix in files
# Named groups of target modules; each name is matched like peft does, as a dotted-path suffix.
TARGET_GROUPS = {
    "attention": ("img_qkv", "txt_qkv", "to_out.0", "to_add_out"),
    "mlp": ("w1", "w2", "w3"),
    "modulation": ("img_mod.1", "txt_mod.1"),
}
DEFAULT_TARGETS = ("attention", "mlp")


# ---------------------------------------------------------------------- adapters for training
def resolve_targets(transformer: nn.Module, targets: Iterable[str] = DEFAULT_TARGETS) -> list[str]:
    """Group names expanded to module-name suffixes, each checked to name at least one Linear.

    peft raises only when no target matches at all; a misspelt one next to valid ones would simply
    train fewer layers than asked for."""
    linears = [  # the base Linears, also when an adapter already wraps them (".base_layer")
        name.removesuffix(".base_layer")
        for name, m in transformer.named_modules()
        if isinstance(m, nn.Linear) and ".lora_" not in name
    ]
    out: list[str] = []
    for target in targets:
        for suffix in TARGET_GROUPS.get(target, (target,)):
            if not any(n == suffix or n.endswith("." + suffix) for n in linears):
                names = sorted(
                    {n.split(".", 2)[-1] if n.startswith("transformer_blocks.") else n for n in linears}
                )
                raise LensError(
                    f"LoRA target {suffix!r} names no Linear layer of the denoiser; use a group "
                    f"({', '.join(TARGET_GROUPS)}) or a module name such as {', '.join(names[:8])}"
                )
            if suffix not in out:
                out.append(suffix)
    if not out:
        raise LensError(f"no LoRA targets given; the default is {', '.join(DEFAULT_TARGETS)}")
    return out


def lora_config(
    transformer: nn.Module,
    rank: int,
    alpha: float | None = None,
    dropout: float = 0.0,
    targets: Iterable[str] = DEFAULT_TARGETS,
):
    """A peft `LoraConfig` for the denoiser: scale alpha / rank (alpha defaults to rank, scale 1)."""
    from peft import LoraConfig

    if not isinstance(rank, int) or rank < 1:
        raise LensError(f"LoRA rank must be a positive integer, got {rank!r}")
    alpha = float(rank) if not alpha else float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise LensError(f"LoRA alpha must be a positive number, got {alpha!r}")
    if not 0.0 <= dropout < 1.0:
        raise LensError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    # init_lora_weights=True: A random, B zero, so a new adapter starts as an exact no-op
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=resolve_targets(transformer, targets),
        init_lora_weights=True,
    )


def add_lora(
    transformer,
    rank: int,
    alpha: float | None = None,
    dropout: float = 0.0,
    targets: Iterable[str] = DEFAULT_TARGETS,
    adapter_name: str = "default",
):
    """Inject a trainable adapter; every base weight is frozen (requires_grad False). Returns the config."""
    config = lora_config(transformer, rank, alpha, dropout, targets)
    transformer.add_adapter(config, adapter_name)
    for name, p in transformer.named_parameters():  # peft freezes the base already; say so, not assume
        p.requires_grad_(".lora_" in name)
    _same_mode(transformer)
    return config


def _same_mode(transformer: nn.Module) -> None:
    """peft creates its dropout modules in training mode even inside an eval() model, which would
    make inference with a dropout-trained adapter random; give them the model's mode."""
    transformer.train(transformer.training)


def has_lora(transformer: nn.Module) -> bool:
    return bool(getattr(transformer, "peft_config", None))


def save_lora(transformer, folder: str | Path, adapter_name: str = "default") -> Path:
    """Write one adapter of `transformer` as FOLDER/pytorch_lora_weights.safetensors (float32)."""
    from peft.utils import get_peft_model_state_dict

    if adapter_name not in getattr(transformer, "peft_config", {}):
        raise LensError(f"the denoiser has no LoRA adapter named {adapter_name!r}")
    layers = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    layers = {k: v.detach().float().contiguous().cpu() for k, v in layers.items()}
    metadata = transformer.peft_config[adapter_name].to_dict()
    LensLoraLoaderMixin.save_lora_weights(
        folder, transformer_lora_layers=layers, transformer_lora_adapter_metadata=metadata
    )
    return Path(folder) / LORA_WEIGHT_NAME_SAFE


def merge_lora(transformer):
    """Fold every adapter into the base weights and drop the LoRA layers: a plain denoiser again."""
    transformer.fuse_lora()
    transformer.unload_lora()
    return transformer


def _with_prefix(state: dict) -> dict:
    """Keys written by `transformer.save_lora_adapter` (no component prefix) get diffusers' prefix."""
    prefix = TRANSFORMER_NAME + "."
    if state and not any(k.startswith(prefix) for k in state) and all(".lora_" in k for k in state):
        return {prefix + k: v for k, v in state.items()}
    return state


# ---------------------------------------------------------------------- the pipeline mixin
class LensLoraLoaderMixin(LoraBaseMixin):
    """diffusers' LoRA loader API for `LensPipeline` (one LoRA-loadable component: the transformer)."""

    _lora_loadable_modules = [TRANSFORMER_NAME]
    transformer_name = TRANSFORMER_NAME

    @classmethod
    def lora_state_dict(
        cls, pretrained_model_name_or_path_or_dict, return_lora_metadata: bool = False, **kwargs
    ):
        """The adapter's state dict (and its LoraConfig metadata): a folder, a .safetensors file, a hub id
        or a dict (with `metadata=`, else alpha = rank). `use_safetensors=False` is refused."""
        if kwargs.get("use_safetensors") is False:
            raise LensError("LoRA weights load from safetensors only; drop use_safetensors=False")
        source = pretrained_model_name_or_path_or_dict
        if isinstance(source, dict):  # a bare state dict has no header: pass metadata= for its alpha
            state, metadata = dict(source), kwargs.get("metadata")
        else:
            weight_name = kwargs.pop("weight_name", None)
            state, metadata = read_lora_file(lora_file(source, weight_name, **kwargs))
        state = _with_prefix(state)
        return (state, metadata) if return_lora_metadata else state

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict,
        adapter_name: str | None = None,
        hotswap: bool = False,
        **kwargs,
    ):
        """Load an adapter into the transformer (diffusers' `load_lora_weights`); keys and shapes are
        checked first, any failure is one LensError."""
        source = pretrained_model_name_or_path_or_dict
        label = "the given state dict" if isinstance(source, dict) else str(source)
        low_cpu_mem_usage = kwargs.pop("low_cpu_mem_usage", True)
        state, metadata = self.lora_state_dict(source, return_lora_metadata=True, **kwargs)
        check_lora_state_dict(state, self.transformer, label, TRANSFORMER_NAME)
        try:
            self.load_lora_into_transformer(
                state,
                transformer=self.transformer,
                adapter_name=adapter_name,
                metadata=metadata,
                _pipeline=self,
                low_cpu_mem_usage=low_cpu_mem_usage,
                hotswap=hotswap,
            )
        except LensError:
            raise
        except (ValueError, KeyError, RuntimeError) as err:  # e.g. an adapter name already in use
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise LensError(f"could not load LoRA {label}: {first}") from None

    @classmethod
    def load_lora_into_transformer(
        cls, state_dict, transformer, adapter_name=None, _pipeline=None, low_cpu_mem_usage=False, hotswap=False,
        metadata=None,
    ):  # fmt: skip
        transformer.load_lora_adapter(
            state_dict,
            network_alphas=None,
            adapter_name=adapter_name,
            metadata=metadata,
            _pipeline=_pipeline,
            low_cpu_mem_usage=low_cpu_mem_usage,
            hotswap=hotswap,
        )
        _same_mode(transformer)

    @classmethod
    def save_lora_weights(
        cls,
        save_directory,
        transformer_lora_layers: dict | None = None,
        is_main_process: bool = True,
        weight_name: str | None = None,
        save_function=None,
        safe_serialization: bool = True,
        transformer_lora_adapter_metadata: dict | None = None,
    ):
        """Write `pytorch_lora_weights.safetensors` (diffusers' signature; safetensors only)."""
        if not safe_serialization:
            raise LensError("LoRA weights are written as safetensors only; drop safe_serialization=False")
        if not transformer_lora_layers:
            raise LensError(
                "pass transformer_lora_layers (e.g. peft's get_peft_model_state_dict(transformer))"
            )
        cls._save_lora_weights(
            save_directory=save_directory,
            lora_layers={cls.transformer_name: transformer_lora_layers},
            lora_metadata={cls.transformer_name: transformer_lora_adapter_metadata},
            is_main_process=is_main_process,
            weight_name=weight_name,
            save_function=save_function,
            safe_serialization=True,
        )

    def fuse_lora(self, components=(TRANSFORMER_NAME,), lora_scale: float = 1.0, safe_fusing: bool = False,
                  adapter_names=None, **kwargs):  # fmt: skip
        """Fold the active adapters, times `lora_scale`, into the transformer's weights."""
        super().fuse_lora(list(components), lora_scale, safe_fusing, adapter_names, **kwargs)

    def unfuse_lora(self, components=(TRANSFORMER_NAME,), **kwargs):
        """Subtract what `fuse_lora` added (exact up to float rounding)."""
        super().unfuse_lora(list(components), **kwargs)


def check_lora_options(source: str | None, scale: float | None) -> Path | None:
    """`lens generate --lora PATH --lora-scale S`: the adapter file, or None without --lora. Checked
    before any model loads, so a wrong path fails in a second, not after loading the pipeline."""
    if source is None:
        if scale is not None:
            raise LensError("--lora-scale needs --lora PATH")
        return None
    if scale is not None and not math.isfinite(scale):
        raise LensError(f"--lora-scale must be a finite number, got {scale}")
    return lora_file(source)


def use_lora(pipe, source, scale: float | None = None, adapter_name: str = "lora") -> None:
    """Load an adapter and set its strength (default 1). It stays a separate low-rank branch, not
    fused: exact in any dtype (fusing into bf16 weights rounds the small update away), and cheap next
    to the base matmuls."""
    scale = 1.0 if scale is None else float(scale)
    if not math.isfinite(scale):
        raise LensError(f"the LoRA scale must be a finite number, got {scale}")
    pipe.load_lora_weights(source, adapter_name=adapter_name)
    pipe.set_adapters([adapter_name], [scale])
