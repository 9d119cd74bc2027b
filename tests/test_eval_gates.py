"""`lens.eval.gates.colour_shape_gate`: a generator that draws what it is asked for passes, a blank one fails."""

import numpy as np

from lens.eval.gates import colour_shape_gate, gate_prompts
from lens.world import reason, render_scene
from lens.world.vocab import CHROMATIC, SHAPES


def test_the_prompts_cover_every_chromatic_colour_and_shape():
    items = gate_prompts()
    assert len(items) == len(CHROMATIC) * len(SHAPES) == len({p for p, _, _ in items})
    assert ("a photo of an orange circle", "orange", "circle") in items


def test_the_worlds_own_images_pass_and_blank_images_fail():
    def oracle(prompts, seed):
        return [render_scene(reason(p, seed)[1], 64, 64) for p in prompts]

    def blank(prompts, seed):
        return np.full((len(prompts), 64, 64, 3), 0.5, np.float32)

    drawn = colour_shape_gate(oracle, seeds=1)
    assert drawn["n"] == len(gate_prompts())
    assert drawn["colour"] >= 0.95 and drawn["shape"] >= 0.95 and drawn["both"] >= 0.9, drawn
    assert colour_shape_gate(blank, seeds=1) == {"colour": 0.0, "shape": 0.0, "both": 0.0, "n": drawn["n"]}


def test_rewrites_reach_the_generator_and_the_short_prompt_is_scored():
    seen = []

    def oracle(texts, seed):  # keeps what it was given, draws the prompt under each rewrite
        seen.extend(texts)
        return [render_scene(reason(t.split(" | ")[0], seed)[1], 64, 64) for t in texts]

    def rewrite(prompt, seed):
        return f"{prompt} | rewritten with seed {seed}"

    drawn = colour_shape_gate(oracle, seeds=1, rewrite=rewrite)
    assert seen == [rewrite(p, 0) for p, _, _ in gate_prompts()]
    assert drawn["colour"] >= 0.95 and drawn["shape"] >= 0.95, drawn
