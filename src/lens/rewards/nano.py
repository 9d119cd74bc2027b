"""The exact Nano-Eval rubric as a reward, for RL in the nano world.

Each image is analysed by Nano-Eval's own detector (lens.eval.detect) and judged against its prompt's
GenEval-format metadata (lens.eval.prompts.nano_prompts / read_prompts) by GenEval's rules
(lens.eval.rules.verdicts): the score is the share of rules that pass (a count, a colour, a position,
an exclude each count once), so an image that gets the shapes right but one colour wrong earns
partial credit. `strict=True` gives Nano-Eval's own per-image verdict instead: 1 when every rule
passes, else 0. The prompt text is not read: the metadata says what the image must show, whatever
caption style the generator was given.
"""

from __future__ import annotations

from PIL import Image

from lens.errors import LensError
from lens.eval.detect import detect
from lens.eval.prompts import check_metadata
from lens.eval.rules import verdicts
from lens.rewards.adapter import check_batch


class NanoEvalReward:
    def __init__(self, strict: bool = False):
        self.strict = strict

    def __call__(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict | None]
    ) -> list[float]:
        check_batch(images, prompts, metadata)
        return [self.score(im, md, i) for i, (im, md) in enumerate(zip(images, metadata))]

    def score(self, image: Image.Image, metadata: dict | None, index: int = 0) -> float:
        if metadata is None:
            raise LensError(
                f"the nano-eval reward needs GenEval metadata for image {index}; pass the prompts' "
                "metadata (lens.eval.prompts.nano_prompts() or read_prompts(path))"
            )
        rules = verdicts(detect(image), check_metadata(metadata, f"metadata of image {index}"))
        passed = sum(v.passed for v in rules)
        if self.strict:
            return float(passed == len(rules))
        return passed / len(rules)

    def __repr__(self) -> str:
        return f"NanoEvalReward(strict={self.strict})"
