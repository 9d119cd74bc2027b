"""`lens distill`: a few-step student from any Lens pipeline (DMD2 + decoupled DMD + an adversarial
term; REFERENCE 10, docs/post-training.md).

`config.py` the typed config and presets, `losses.py` the objectives as tensor functions, `critic.py`
the discriminator head on the frozen teacher's features, `student.py` the student's steps, sampling
and export as a pipeline, `loop.py` the run.
"""

from lens.distill.config import DistillConfig, load_distill_config
from lens.distill.loop import distill
from lens.distill.student import export_student

__all__ = ["DistillConfig", "distill", "export_student", "load_distill_config"]
