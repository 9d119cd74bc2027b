"""Typed training configuration: one dataclass per concern, JSON round trip, `--set a.b=value` overrides.

A run is fully described by a `Config`; `lens train` writes the resolved one to `RUN_DIR/config.json`,
which is itself a valid CONFIG argument. Named presets, and `load_config` (a CONFIG argument ->
`Config`), live in `lens.train.presets`, which imports this module (never the reverse). Overrides are
type-checked against the field annotations, so `--set optim.lr=fast` fails with a message naming the
field, its type and an example, instead of failing an hour into a run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from lens.errors import LensError

LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")


@dataclass
class ModelConfig:
    """Denoiser shape: `LensTransformer2DModel` keyword arguments, and optional starting weights."""

    num_layers: int = 48
    num_attention_heads: int = 24
    attention_head_dim: int = 64
    enc_hidden_dim: int = 2880
    axes_dims_rope: tuple[int, ...] = (8, 28, 28)
    selected_layer_index: tuple[int, ...] = (5, 11, 17, 23)
    mlp_hidden_dim: int | None = None
    pos_embed: str = "rope"  # rope (Lens) | rope+sincos (adds absolute 2-D image positions; not Lens)
    # not Lens: train with grounded captions (each object phrase's tokens at its object's place in RoPE,
    # from the data's grounding spans; `lens.text.grounding`); pipelines then ground their prompts
    text_grounding: bool = False
    # default | whiten: fold per-layer centring + whitening of the text features (estimated on the
    # first `whiten_samples` training captions) into txt_in at init (`lens.train.denoiser.fold_whitening`)
    txt_in_init: str = "default"
    whiten_samples: int = 512
    init_from: str = ""  # pipeline or transformer folder (released or `lens export`ed) to fine-tune from
    # LoRA (lens.lora): rank > 0 trains only an adapter on the frozen denoiser (init_from's weights, or
    # the seeded init); targets are groups (attention, mlp, modulation) or module names (img_qkv, w2)
    lora_rank: int = 0
    lora_alpha: float = 0.0  # 0 = lora_rank (scale alpha / rank = 1)
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("attention", "mlp")

    def model_kwargs(self) -> dict:
        # how to start and what to train, not what the model is
        skip = ("init_from", "txt_in_init", "whiten_samples", *LORA_FIELDS)
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}

    def lora_kwargs(self) -> dict:
        """`lens.lora.add_lora` keyword arguments ({} when the run trains the whole denoiser)."""
        if self.lora_rank <= 0:
            return {}
        alpha = self.lora_alpha or None
        return dict(rank=self.lora_rank, alpha=alpha, dropout=self.lora_dropout, targets=self.lora_targets)


@dataclass
class EncoderConfig:
    """The frozen VAE and text encoder (run online for image shards, by `lens prepare` otherwise)."""

    source: str = "tiny"  # "tiny": random in-process models (tests); else a pipeline folder (vae/, text_encoder/, tokenizer/)
    dtype: str = "bfloat16"  # encoder weights on GPU; CPU always runs float32
    max_text_tokens: int = 512  # including the chat-template prefix, as at inference
    # frozen: the LM only encodes (the Lens recipe); joint: the pretrained LM trains with the denoiser;
    # scratch: a re-initialised LM trains with the denoiser (issue 3's experiment c; one process only)
    text_training: str = "frozen"


@dataclass
class DataConfig:
    """Shards, buckets or packing, shuffling and caption policy."""

    # tar shards or .parquet files: a folder, glob, brace pattern (a-{000..009}.tar) or comma list;
    # "synthetic" = make some (lens.source.spec)
    shards: str = "synthetic"
    kind: str = "auto"  # images | features | auto (decided from the first sample)
    buckets: str = "lens"  # lens | lens-512 | lens-768 | lens-1024 | "HxW:batch,HxW:batch,..."
    batch_size: int = 0  # > 0 replaces every bucket's per-rank batch size
    packing: bool = False  # pack mixed sizes into one sequence per rank instead of one bucket per step
    pack_tokens: int = 0  # image-token budget of a pack; 0 = the largest bucket's batch x tokens
    shuffle_buffer: int = 1000
    caption: str = "dense"  # dense | brief | mixed
    # the style the shards' dense captions were written in (compact | verbose, `lens world generate
    # --caption-style`): eval hooks phrase the reasoner's rewrites and probe captions the same way
    caption_style: str = "compact"
    # the object scale the world shards were drawn at (`lens world generate --object-scale`): the nano
    # reasoner lays out in-training Nano-Eval scenes at it; exported as `world_object_scale`
    world_object_scale: float = 1.0
    mixed_brief_prob: float = 0.5  # with caption=mixed, the chance a sample trains on its brief caption
    caption_dropout: float = 0.1  # chance a caption becomes the null condition (zero text tokens)
    prefetch: int = 2  # batches prepared ahead in a background thread (0 = none)
    workers: int = 4  # image-decoding threads (0 or 1 = decode in the loader thread)
    synthetic_samples: int = 96  # for shards="synthetic"
    synthetic_shards: int = 4
    # parquet sources (e.g. a Hugging Face dataset's files): the image column ({bytes, path} structs,
    # bytes or paths) and the caption columns; brief_column "" = none
    image_column: str = "image"
    caption_column: str = "caption"
    brief_column: str = ""


@dataclass
class ObjectiveConfig:
    """Flow matching with logit-normal sigmas (REFERENCE 5, 9)."""

    logit_mean: float | None = None  # None: interpolate from the image token count; a number: fixed
    logit_mean_lo: float = 1.0
    logit_mean_hi: float = 1.3
    logit_mean_lo_tokens: int = 256
    logit_mean_hi_tokens: int = 4096
    logit_std: float = 1.0


@dataclass
class AdamWConfig:
    """AdamW and gradient clipping, as `lens train` and `lens rl` both use them."""

    lr: float = 2e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 = no clipping (the norm is still measured)


@dataclass
class OptimConfig(AdamWConfig):
    warmup_steps: int = 0  # linear warm-up, then constant
    grad_accum: int = 1  # micro-batches per optimiser step
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.9999


@dataclass
class TrainConfig:
    steps: int = 1000
    seed: int = 0
    precision: str = "bf16"  # bf16 (autocast; FSDP params in bf16, reductions in fp32) | fp32
    activation_checkpointing: bool = True  # per block
    compile: bool = False  # per-block torch.compile
    max_nonfinite: int = 10  # stop after this many non-finite steps in a row
    threads: int = 0  # CPU threads (torch.set_num_threads); 0 = leave as is
    max_minutes: float = 0.0  # wall-time budget: stop with a checkpoint at the first step past it; 0 = none
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class ParallelConfig:
    fsdp: str = "auto"  # auto (on when WORLD_SIZE > 1) | on | off
    backend: str = "auto"  # auto (nccl on GPU, gloo on CPU) | nccl | gloo
    reshard_after_forward: bool = True


@dataclass
class CheckpointConfig:
    interval: int = 1000  # steps between checkpoints (and one at the end)
    keep: int = 3  # last K checkpoints kept


@dataclass
class LogConfig:
    every: int = 10  # console / TensorBoard interval
    tensorboard: bool = True
    peak_tflops: float = 0.0  # for MFU; 0 = from the device table (unknown devices: no MFU)
    sample_every: int = 0  # sample grids; 0 = off
    sample_prompts: tuple[str, ...] = ()
    sample_size: str = "512x512"
    sample_steps: int = 20
    sample_guidance: float = 5.0
    sample_seed: int = 0
    eval_every: int = 0  # evaluation hooks; 0 = off
    evals: tuple[str, ...] = ("val-loss",)  # val-loss | nano-eval


@dataclass
class FaultConfig:
    """Fault injection for tests of crash safety; leave at defaults for real runs."""

    kill_at_step: int = 0  # SIGKILL self right after this step
    kill_during_save: int = 0  # SIGKILL self halfway through writing this step's checkpoint
    nonfinite_at: tuple[int, ...] = ()  # steps whose loss is made NaN


class SavedConfig:
    """A config dataclass written as JSON (a run's config.json, rl.json, distill.json): itself a CONFIG."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass
class Config(SavedConfig):
    preset: str = ""
    run_dir: str = ""  # default: runs/<preset>
    model: ModelConfig = field(default_factory=ModelConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)


_CHOICES = {
    "data.kind": ("auto", "images", "features"),
    "data.caption": ("dense", "brief", "mixed"),
    "data.caption_style": ("compact", "verbose"),
    "model.pos_embed": ("rope", "rope+sincos"),
    "model.txt_in_init": ("default", "whiten"),
    "train.precision": ("bf16", "fp32"),
    "train.device": ("auto", "cpu", "cuda"),
    "parallel.fsdp": ("auto", "on", "off"),
    "parallel.backend": ("auto", "nccl", "gloo"),
    "encoders.dtype": ("bfloat16", "float16", "float32"),
    "encoders.text_training": ("frozen", "joint", "scratch"),
}


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _parse_scalar(text: str, tp, where: str):
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise LensError(f"{where} expects true/false, got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise LensError(f"{where} expects an integer (e.g. 100), got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise LensError(f"{where} expects a number (e.g. 1e-4), got {text!r}") from None
    return text


def coerce(value, tp, where: str):
    """Check/convert `value` (from JSON or a --set string) to the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        return coerce(value, args[0], where)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError:
                    raise LensError(f"{where}: {text!r} is not a JSON list") from None
            else:
                sep = ";" if item is str else ","
                value = [] if not text else [v.strip() for v in text.split(sep)]
        if not isinstance(value, (list, tuple)):
            raise LensError(f"{where} expects a list (e.g. 1,2,3 or a JSON list), got {value!r}")
        return tuple(coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, str):
        return _parse_scalar(value, tp, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise LensError(f"{where} expects {tp.__name__}, got {value!r}")
    return value


def _section(cfg: Config, name: str):
    if name not in {f.name for f in dataclasses.fields(cfg)} or not dataclasses.is_dataclass(
        getattr(cfg, name)
    ):
        sections = [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]
        raise LensError(f"unknown config section {name!r}; sections are {', '.join(sections)}")
    return getattr(cfg, name)


def set_value(cfg: Config, key: str, value) -> None:
    """Set `section.field` (or a top-level field) with type checking."""
    parts = key.split(".")
    if len(parts) == 1:
        target, name = cfg, parts[0]
    elif len(parts) == 2:
        target, name = _section(cfg, parts[0]), parts[1]
    else:
        raise LensError(f"config key {key!r} must look like section.field (e.g. optim.lr)")
    hints = _hints(type(target))
    if name not in hints or dataclasses.is_dataclass(getattr(target, name)):
        fields = ", ".join(f"{parts[0]}.{n}" if len(parts) == 2 else n for n in hints)
        raise LensError(f"unknown config field {key!r}; valid fields: {fields}")
    new = coerce(value, hints[name], key)
    if key in _CHOICES and new not in _CHOICES[key]:
        raise LensError(f"{key} must be one of {', '.join(_CHOICES[key])}, got {new!r}")
    setattr(target, name, new)


def apply_overrides(cfg: Config, items: list[str]) -> Config:
    """Apply ['a.b=value', ...] (the `--set` arguments) in order."""
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise LensError(f"--set {item!r} must look like section.field=value (e.g. --set optim.lr=1e-4)")
        set_value(cfg, key.strip(), value)
    return cfg


def apply_dict(cfg: Config, data: dict, prefix: str = "") -> Config:
    """Apply a nested dict (from a JSON/TOML file) onto `cfg`, type-checked like --set."""
    for key, value in data.items():
        if isinstance(value, dict):
            if prefix:
                raise LensError(f"config nests too deep at {prefix}{key}")
            apply_dict(cfg, value, prefix=f"{key}.")
        else:
            set_value(cfg, f"{prefix}{key}", value)
    return cfg


def validate(cfg: Config) -> Config:
    """Cross-field checks that a type alone cannot express."""
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) not in choices:
            raise LensError(f"{key} must be one of {', '.join(choices)}")
    checks = [
        (cfg.train.steps >= 1, "train.steps must be >= 1"),
        (cfg.train.max_minutes >= 0, "train.max_minutes must be >= 0 (0 = no wall-time limit)"),
        (cfg.optim.grad_accum >= 1, "optim.grad_accum must be >= 1"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (0 <= cfg.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1)"),
        (0 <= cfg.data.caption_dropout <= 1, "data.caption_dropout must be in [0, 1]"),
        (0 <= cfg.data.mixed_brief_prob <= 1, "data.mixed_brief_prob must be in [0, 1]"),
        (
            0.5 <= cfg.data.world_object_scale <= 2.0,
            "data.world_object_scale must be in 0.5..2.0 (the --object-scale the world was drawn at)",
        ),
        (
            cfg.checkpoint.interval >= 1 and cfg.checkpoint.keep >= 1,
            "checkpoint.interval and keep must be >= 1",
        ),
        (cfg.log.every >= 1, "log.every must be >= 1"),
        (len(cfg.optim.betas) == 2, "optim.betas needs two values, e.g. 0.9,0.999"),
        (cfg.data.shuffle_buffer >= 1, "data.shuffle_buffer must be >= 1"),
        (cfg.model.lora_rank >= 0, "model.lora_rank must be >= 0 (0 = train the whole denoiser)"),
        (cfg.model.lora_alpha >= 0, "model.lora_alpha must be >= 0 (0 = model.lora_rank)"),
        (0 <= cfg.model.lora_dropout < 1, "model.lora_dropout must be in [0, 1)"),
    ]
    if cfg.model.lora_rank > 0:  # the adapter must fit the base it is applied to later
        checks += [
            (
                cfg.model.txt_in_init == "default",
                "model.txt_in_init=whiten rewrites base weights, which a LoRA run keeps frozen; use default",
            ),
            (
                cfg.encoders.text_training == "frozen",
                "a LoRA run trains only the denoiser's adapter; keep encoders.text_training=frozen",
            ),
            (bool(cfg.model.lora_targets), "model.lora_targets is empty; e.g. attention;mlp"),
        ]
    for ok, message in checks:
        if not ok:
            raise LensError(message)
    return cfg
