"""Post-training a grounded model (`model.text_grounding`, `lens.text.grounding`): with
`rollout.rewrite` / `data.rewrite` the nano reasoner's captions condition the model, and every
forward that reads text also reads its places, as the pipeline gives them; the reward still judges
the request. A model not trained grounded gets no places (the released layout)."""

import numpy as np
import pytest
import torch

from lens.distill import load_distill_config
from lens.distill.loop import DistillTrainer
from lens.errors import LensError
from lens.pipeline import LensPipeline
from lens.rl import load_rl_config
from lens.rl.loop import RLTrainer
from lens.testing import tiny_random_pipeline
from lens.text.chat import default_template
from lens.text.grounding import GroundedPrompt, prompt_places
from lens.train.posttrain import Prompt, rewrite_prompts
from lens.world.reasoner import rewrite_prompt

QUIET = ["log.sample_every=0", "log.tensorboard=false"]


@pytest.fixture(scope="module")
def grounded_base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grounded") / "base"
    tiny_random_pipeline(seed=3, text_grounding=True).save_pretrained(str(folder))
    return folder


def spy(model) -> list[bool | None]:
    """Per forward that reads text tokens: whether it was given places (None: no text read)."""
    seen = []

    def hook(module, args, kwargs):
        text = args[1] if len(args) > 1 else kwargs["encoder_hidden_states"]
        places = kwargs.get("encoder_places")
        if text.shape[1] > 0:
            seen.append(places is not None and bool(torch.isfinite(places).any()))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_rewrite_keeps_the_request_for_the_reward():
    prompts = [Prompt("a photo of two red circles", {"tag": "counting"})]
    (p,) = rewrite_prompts(prompts, "compact")
    assert p.text == "a photo of two red circles" and p.metadata == {"tag": "counting"}
    assert isinstance(p.caption, GroundedPrompt) and p.conditioning == rewrite_prompt(p.text, style="compact")
    assert "red circle" in p.conditioning and p.conditioning.spans
    assert rewrite_prompts(prompts, "none") == prompts and prompts[0].conditioning == prompts[0].text


def test_rewrites_are_laid_out_at_the_bases_world_scale(tmp_path):
    from lens.train.posttrain import base_object_scale

    base = tmp_path / "base"
    base.mkdir()
    (base / "model_index.json").write_text('{"_class_name": "LensPipeline", "world_object_scale": 1.8}')
    assert base_object_scale(str(base)) == 1.8
    assert base_object_scale("tiny") == base_object_scale(str(tmp_path / "missing")) == 1.0
    prompts = [Prompt("a photo of four hearts", None)]
    (p,) = rewrite_prompts(prompts, "compact", object_scale=1.8)
    assert p.conditioning == rewrite_prompt(p.text, object_scale=1.8) != rewrite_prompt(p.text)


def scored(images, prompts, metadata):
    scored.seen = list(prompts)
    return [float(np.asarray(im)[..., 0].mean()) for im in images]


def test_rl_rolls_out_and_trains_grounded(tmp_path, grounded_base):
    cfg = load_rl_config(
        "debug",
        QUIET + [f"run_dir={tmp_path / 'rl'}", f"policy.base={grounded_base}", "rollout.rewrite=compact",
                 "rollout.sizes=64x64", "rollout.steps=2", "rollout.guidance=2.0", "run.steps=1"],
    )  # fmt: skip
    t = RLTrainer(cfg, reward=scored)
    assert t.grounded and all(isinstance(p.conditioning, GroundedPrompt) for p in t.prompts)
    seen = spy(t.model)
    t.one_step()
    # rollouts (2 steps, conditional branch), v_old, v_ref and theta: all with places
    assert len(seen) >= 5 and all(seen), seen
    assert set(scored.seen) <= {p.text for p in t.prompts}  # the reward judged the requests

    # the places a pipeline gives the same caption (`LensPipeline._conditions`)
    caption = t.prompts[0].conditioning
    (ours,) = t.encoders.prompt_places([caption], True)
    pipe = LensPipeline.from_pretrained(str(grounded_base))
    template = default_template(pipe.text_encoder, pipe.tokenizer)
    (theirs,) = prompt_places(pipe.tokenizer, template, [caption], None, True, cfg.rollout.max_text_tokens)
    assert torch.allclose(ours, theirs, equal_nan=True)
    assert torch.isnan(ours).any() and torch.isfinite(ours).any()  # the phrases placed, the rest not


def test_rl_on_an_ungrounded_base_passes_no_places(tmp_path):
    cfg = load_rl_config(
        "debug", QUIET + [f"run_dir={tmp_path / 'rl'}", "rollout.rewrite=compact", "run.steps=1"]
    )
    t = RLTrainer(cfg, reward=scored)
    seen = spy(t.model)
    t.one_step()
    assert not t.grounded and seen and not any(seen)


def test_distill_reads_places_in_every_model(tmp_path, grounded_base):
    cfg = load_distill_config(
        "debug",
        QUIET + [f"run_dir={tmp_path / 'd'}", f"out={tmp_path / 'out'}", f"teacher={grounded_base}",
                 "data.rewrite=compact", "data.sizes=64x64", "data.batch=2", "adversarial.real_steps=2",
                 "dmd.fake_updates=1", "run.steps=1"],
    )  # fmt: skip
    t = DistillTrainer(cfg)
    assert t.grounded and all(isinstance(p, GroundedPrompt) for p in t.prompts)
    seen = {name: spy(m) for name, m in (("teacher", t.teacher), ("student", t.student), ("fake", t.fake))}
    t.one_step()
    for name, s in seen.items():
        assert s and all(s), (name, s)
    assert t.batch().places.shape[:2] == t.batch().text.shape[:2]


def test_rewrite_is_checked():
    with pytest.raises(LensError, match="rollout.rewrite must be one of none, compact, verbose"):
        load_rl_config("debug", ["rollout.rewrite=fancy"])
    with pytest.raises(LensError, match="data.rewrite must be one of"):
        load_distill_config("debug", ["out=x", "data.rewrite=fancy"])


@pytest.mark.parametrize("kind", ["rl", "distill"])
def test_a_sample_prompt_the_reasoner_cannot_read_stops_the_run_before_it_starts(tmp_path, kind):
    bad = "log.sample_prompts=a photo of a red circle;a yellow star to the left of a purple heart"
    run = tmp_path / kind
    message = r"^log\.sample_prompts \(rewritten by the nano reasoner, style compact\): could not read 'a yellow star"
    with pytest.raises(LensError, match=message):
        if kind == "rl":
            RLTrainer(
                load_rl_config("debug", [f"run_dir={run}", "rollout.rewrite=compact", bad]), reward=scored
            )
        else:
            cfg = load_distill_config(
                "debug", [f"run_dir={run}", f"out={tmp_path / 'out'}", "data.rewrite=compact", bad]
            )
            DistillTrainer(cfg)
    assert not (run / "checkpoints").exists()
