"""The model stages: NSFW and watermark classifiers, and the aesthetic predictor.

- nsfw / watermark: any transformers image-classification model (the paper used an EVA NSFW classifier
  and a SigLIP2 watermark classifier). Score = probability of the positive labels (summed for softmax
  models, the largest for multi-label ones); drop when score >= threshold (default 0.5).
- aesthetic: Aesthetic Predictor v2.5 style: a SigLIP (or CLIP) image embedding, L2-normalised, then a
  stack of linear layers read from a safetensors file (keys `<prefix>.<n>.weight` / `.bias`, applied in
  order of n; dropout layers have no weights and no effect at inference). Drop score < 3 (the paper's).
  The official v2.5 head ships as a .pth pickle: convert it once, yourself, with
  `torch.load(path, weights_only=True)` and `safetensors.torch.save_file`; Lens never unpickles.
"""

from __future__ import annotations

import re

import numpy as np

from lens.data.filters.base import Item, Stage
from lens.data.filters.models import Classifier, cached_embeddings
from lens.errors import LensError

NSFW_LABELS = ("nsfw", "porn", "hentai", "sexy", "explicit", "unsafe")
WATERMARK_LABELS = ("watermark", "watermarked")
AESTHETIC_MIN = 3.0


class ClassifierStage(Stage):
    def __init__(self, name: str, model_id: str, labels, threshold: float = 0.5, device: str = "cpu"):
        self.name, self.threshold = name, threshold
        self.classifier = Classifier(model_id, device)
        self.positive = self.classifier.label_indices(list(labels), name)
        names = [self.classifier.labels[i] for i in self.positive]
        self.rule = f"drop P({' | '.join(names)}) >= {threshold} ({model_id})"

    def score_batch(self, items: list[Item]) -> list[float]:
        if not items:
            return []
        p = self.classifier.probs([it.image for it in items])[:, self.positive]  # (B, P)
        s = p.max(axis=1) if self.classifier.multi_label else p.sum(axis=1)
        return [float(v) for v in s]

    def keep(self, score):
        return score is None or score < self.threshold


def load_linear_head(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W (out, in), b (out,))] in layer order, from a safetensors file of linear layers."""
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception as err:
        raise LensError(
            f"cannot read aesthetic head {path} as safetensors ({err}); convert it first"
        ) from err
    layers = []
    for key, w in tensors.items():
        if key.endswith(".weight") or key == "weight":
            prefix = key[: -len("weight")]
            nums = tuple(int(n) for n in re.findall(r"\d+", prefix))
            b = tensors.get(prefix + "bias", np.zeros(w.shape[0], w.dtype))
            layers.append((nums, w.astype(np.float32), b.astype(np.float32)))
    layers.sort(key=lambda t: t[0])
    if not layers or any(w.ndim != 2 for _, w, _ in layers):
        raise LensError(f"{path} holds no stack of linear layers (2-D '*.weight' tensors)")
    for (_, w1, _), (_, w2, _) in zip(layers, layers[1:]):
        if w2.shape[1] != w1.shape[0]:
            raise LensError(f"{path}: layer shapes do not chain ({w1.shape} then {w2.shape})")
    if layers[-1][1].shape[0] != 1:
        raise LensError(f"{path}: the last layer must output one score, got {layers[-1][1].shape[0]}")
    return [(w, b) for _, w, b in layers]


class AestheticStage(Stage):
    name = "aesthetic"

    def __init__(self, model_id: str, head_path: str, minimum: float = AESTHETIC_MIN, device: str = "cpu"):
        if not head_path:
            raise LensError("the aesthetic stage needs --aesthetic-head (a safetensors linear head)")
        self.model_id, self.device, self.minimum = model_id, device, minimum
        self.head = load_linear_head(head_path)
        self.rule = f"drop predicted aesthetic score < {minimum} ({model_id} + {head_path})"

    def score_batch(self, items: list[Item]) -> list[float]:
        if not items:
            return []
        x = cached_embeddings(items, self.model_id, self.device)  # (B, D)
        if x.shape[1] != self.head[0][0].shape[1]:
            raise LensError(
                f"aesthetic head expects {self.head[0][0].shape[1]}-d embeddings, model gives {x.shape[1]}"
            )
        for w, b in self.head:
            x = x @ w.T + b  # (B, out)
        return [float(v) for v in x[:, 0]]

    def keep(self, score):
        return score is None or score >= self.minimum
