"""Loading the filter models with transformers: image classifiers and CLIP / SigLIP image embedders.

Models come from a Hugging Face hub id or a local folder the user names; they load without
`trust_remote_code`, and each process loads each model once (stages and work units share it).
"""

from __future__ import annotations

import logging

import numpy as np

from lens.errors import LensError

log = logging.getLogger(__name__)
_CACHE: dict[tuple, object] = {}


def _load(kind: str, model_id: str, device: str):
    key = (kind, model_id, device)
    if key not in _CACHE:
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

        cls = AutoModelForImageClassification if kind == "classifier" else AutoModel
        try:
            processor = AutoImageProcessor.from_pretrained(model_id, trust_remote_code=False)
            model = cls.from_pretrained(model_id, trust_remote_code=False).to(device).eval()
        except (OSError, ValueError) as err:
            raise LensError(
                f"cannot load {kind} model {model_id!r} ({type(err).__name__}: {str(err)[:200]}); pass a "
                "local folder or hub id of a transformers model with a preprocessor_config.json"
            ) from err
        model.requires_grad_(False)  # frozen; calls below run under inference_mode (never flip global state)
        log.info("loaded %s model %s on %s", kind, model_id, device)
        _CACHE[key] = (model, processor)
    return _CACHE[key]


class Classifier:
    """An image-classification model; `probs(images)` -> (B, num_labels) probabilities."""

    def __init__(self, model_id: str, device: str = "cpu"):
        self.model, self.processor = _load("classifier", model_id, device)
        self.device = device
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(len(config.id2label))]
        self.multi_label = getattr(config, "problem_type", None) == "multi_label_classification"

    def label_indices(self, wanted: list[str], what: str) -> list[int]:
        lowered = {w.lower() for w in wanted}
        idx = [i for i, name in enumerate(self.labels) if name.lower() in lowered]
        if not idx:
            raise LensError(
                f"the {what} model's labels are {self.labels}; none is in {sorted(lowered)}: pass --{what}-labels"
            )
        return idx

    def probs(self, images) -> np.ndarray:
        import torch

        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float()  # (B, num_labels)
        p = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return p.cpu().numpy()


class Embedder:
    """CLIP / SigLIP image embeddings, L2-normalised: `embed(images)` -> (B, D) float32."""

    def __init__(self, model_id: str, device: str = "cpu"):
        self.model_id = model_id
        self.model, self.processor = _load("embedder", model_id, device)
        self.device = device

    def embed(self, images) -> np.ndarray:
        import torch

        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        pixels = inputs["pixel_values"]
        with torch.inference_mode():
            if hasattr(self.model, "get_image_features"):
                out = self.model.get_image_features(pixel_values=pixels)
            else:  # a vision tower alone, e.g. SiglipVisionModel or CLIPVisionModelWithProjection
                out = self.model(pixel_values=pixels)
        if not hasattr(out, "shape"):  # transformers >= 5 returns an output object
            out = next(v for v in (getattr(out, "image_embeds", None), out.pooler_output) if v is not None)
        e = out.float()  # (B, D)
        e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return e.cpu().numpy()


def cached_embeddings(items, model_id: str, device: str) -> np.ndarray:
    """Embeddings of items' images, computed once per (item, model) even if two stages use the model."""
    todo = [it for it in items if ("emb", model_id) not in it.cache]
    if todo:
        embs = Embedder(model_id, device).embed([it.image for it in todo])
        for it, e in zip(todo, embs):
            it.cache[("emb", model_id)] = e
    return np.stack([it.cache[("emb", model_id)] for it in items]) if items else np.zeros((0, 0), np.float32)
