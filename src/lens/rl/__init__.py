"""`lens rl`: DiffusionNFT with a LoRA adapter on the denoiser (REFERENCE 10, docs/post-training.md).

`config.py` the typed config and presets, `nft.py` the reward normalisation and the loss, `policy.py`
theta / old / reference on one denoiser, `rollout.py` prompts, rollouts and rewards, `loop.py` the run.
"""

from lens.rl.config import RLConfig, load_rl_config
from lens.rl.loop import rl

__all__ = ["RLConfig", "load_rl_config", "rl"]
