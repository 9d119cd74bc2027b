"""The denoiser a run starts from: a fresh seeded `LensTransformer2DModel`, or the weights of a
released or exported pipeline folder (`model.init_from`) checked against the configured shape; and
`fold_whitening`, the text features' per-layer whitening folded into `txt_in` at init
(`model.txt_in_init=whiten`), so the architecture and state dict stay exactly Lens's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from lens.errors import LensError
from lens.model.transformer import LensTransformer2DModel


def _transformer_folder(path: Path) -> Path:
    if (path / "transformer" / "config.json").is_file():
        return path / "transformer"
    if (path / "config.json").is_file():
        return path
    raise LensError(
        f"model.init_from={path} holds neither transformer/config.json nor config.json; pass a pipeline folder"
    )


def build_model(model_cfg, seed: int = 0) -> LensTransformer2DModel:
    """Fresh (seeded) or `init_from` weights; float32 master weights in train mode."""
    if not model_cfg.init_from:
        torch.manual_seed(seed)
        return LensTransformer2DModel(**model_cfg.model_kwargs()).float().train()
    folder = _transformer_folder(Path(model_cfg.init_from))
    model = LensTransformer2DModel.from_pretrained(str(folder), torch_dtype=torch.float32)
    wanted = model_cfg.model_kwargs()
    found = {k: model.config.get(k) for k in wanted}

    def norm(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    diff = [
        f"{k}: config {norm(wanted[k])} vs weights {norm(found[k])}"
        for k in wanted
        if norm(wanted[k]) != norm(found[k])
    ]
    if diff:
        raise LensError(
            f"model.init_from={folder} does not match the model config ({'; '.join(diff)}); set the model.* fields to match"
        )
    return model.train()


@torch.no_grad()
def fold_whitening(model, features: Sequence[Tensor], eps: float = 1e-2) -> dict[str, float]:
    """Fold per-layer centring + whitening of the normalised text features into `model.txt_in`.

    features: caption-token features, each (S_i, L, D). Per selected layer l the RMS-normalised
    features u_l = txt_norm[l](f_l) have mean mu_l and covariance C_l; with Z = blockdiag(
    (C_l + eps * tr(C_l)/D * I)^-1/2) and mu the stacked means, txt_in(u) = W u + b becomes
    W Z (u - mu) + b: weight W Z, bias b - W Z mu. Whitened inputs have unit variance per channel, the
    energy RMS-normalised ones have, so the output scale stays that of the default initialisation.
    Returns the number of tokens used.
    """
    tokens = torch.cat([f.reshape(-1, *f.shape[-2:]) for f in features]).float()  # (T, L, D)
    if tokens.shape[0] < 2 * tokens.shape[-1]:
        raise LensError(
            f"whitening needs at least {2 * tokens.shape[-1]} caption tokens, got {tokens.shape[0]}"
        )
    weight = model.txt_in.weight.float()  # (width, L*D)
    blocks, means = [], []
    for i, norm in enumerate(model.txt_norm):
        u = norm(tokens[:, i].to(norm.weight.dtype)).double()  # (T, D)
        mu = u.mean(0)
        cov = torch.cov((u - mu).T)
        d = cov.shape[0]
        evals, evecs = torch.linalg.eigh(cov + eps * cov.trace() / d * torch.eye(d, dtype=cov.dtype))
        blocks.append(evecs @ torch.diag(evals.rsqrt()) @ evecs.T)
        means.append(mu)
    z = torch.block_diag(*blocks)  # (L*D, L*D)
    new_weight = weight.double() @ z
    new_bias = model.txt_in.bias.double() - new_weight @ torch.cat(means)
    model.txt_in.weight.copy_(new_weight.to(model.txt_in.weight.dtype))
    model.txt_in.bias.copy_(new_bias.to(model.txt_in.bias.dtype))
    return {"tokens": int(tokens.shape[0])}
