"""Grounded captions end to end: the world's spans, token places, `lens prepare`, the trainer's inputs
and the pipeline's `grounding` (`lens.text.grounding`; `model.text_grounding`, off by default)."""

import math
import pickle

import pytest
import torch

from lens.cli import main
from lens.data.sample import FEATURES_EXT
from lens.data.shards import iter_shard
from lens.errors import LensError
from lens.source.tar import TarSource, record_of
from lens.source.world import write_synthetic_shards
from lens.testing import tiny_random_pipeline
from lens.text.chat import HarmonyTemplate
from lens.text.encoder import encode_prompts
from lens.text.grounding import GroundedPrompt, phrase_spans, token_places
from lens.text.testing import tiny_gpt_oss, tiny_harmony_tokenizer
from lens.train.batches import encode_microbatch
from lens.train.buckets import parse_buckets
from lens.train.encoders import FrozenEncoders
from lens.train.presets import load_config
from lens.train.samples import Microbatch, decode_sample
from lens.world.captions import grounded_brief_caption
from lens.world.compact import compact_caption, grounded_compact_caption
from lens.world.reasoner import rewrite_prompt
from lens.world.sampler import sample_scene


def same_places(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("seed", range(12))
def test_each_object_phrase_is_grounded_at_its_object(seed):
    scene = sample_scene(seed, 0.5, None, 1.0)
    caption = grounded_compact_caption(scene)
    assert str(caption) == compact_caption(scene)  # the same text, with spans
    assert len(caption.spans) >= len(scene.objects)  # every item, and any relation's references
    for start, end, x, y in caption.spans:
        phrase = caption[start:end].lower()
        (obj,) = [o for o in scene.objects if (o.x, o.y) == (x, y)]
        assert obj.shape in phrase  # "a small red circle at top left", "the red circle"
        assert phrase[0] not in " ,." and phrase[-1] not in " ,."
    brief = grounded_brief_caption(scene)
    assert brief.spans == (
        (0, len(brief), *max(((o.x, o.y, o.radius) for o in scene.objects), key=lambda t: t[2])[:2]),
    )


def test_token_places_mark_the_phrase_tokens_and_match_the_encoder():
    tok, lm = tiny_harmony_tokenizer(), tiny_gpt_oss(num_layers=2, hidden_size=32, seed=0)
    template = HarmonyTemplate("2026-12-02")
    prompt = "A big red circle at top left and a small blue star on the right."
    spans = phrase_spans(prompt, [("big red circle", (0.2, 0.3)), ("small blue star", (0.8, 0.5))])
    places = token_places(tok, template, prompt, spans, max_length=512)
    feats, mask = encode_prompts(lm, tok, [prompt], layers=(0, 1), template=template)
    assert places.shape == (int(mask.sum()), 2)
    ids = tok(template.render(prompt), add_special_tokens=False)["input_ids"][template.prefix_length(tok) :]
    words = [tok.decode(i) for i in ids]  # the prompt's tokens, then the template's suffix
    at = {}
    for w, (x, y) in zip(words, places.tolist()):
        if not math.isnan(x):
            at.setdefault((round(x, 4), round(y, 4)), []).append(w)
    assert set(at) == {(0.2, 0.3), (0.8, 0.5)}
    assert "".join(at[0.2, 0.3]) == " big red circle" and "".join(at[0.8, 0.5]) == " small blue star"
    assert places[-5:].isnan().all()  # the template's suffix is not grounded
    cut = token_places(tok, template, prompt, spans, max_length=template.prefix_length(tok) + 3)
    assert cut.shape == (3, 2)  # truncation as the encoder truncates


def test_phrases_and_places_are_checked():
    with pytest.raises(LensError, match="not in the prompt"):
        phrase_spans("a red circle", [("blue star", (0.5, 0.5))])
    with pytest.raises(LensError, match="image fractions"):
        phrase_spans("a red circle", [("red circle", (64, 32))])
    twice = phrase_spans(
        "a red circle and a red circle", [("red circle", (0.1, 0.1)), ("red circle", (0.9, 0.9))]
    )
    assert [s[:2] for s in twice] == [(2, 12), (19, 29)]  # in order


def test_the_reasoner_returns_a_grounded_prompt_that_survives_pickling():
    text = rewrite_prompt("a photo of a red circle left of a blue star", seed=1)
    assert isinstance(text, GroundedPrompt) and text.spans
    back = pickle.loads(pickle.dumps(text))
    assert back == text and back.spans == text.spans


def test_prepare_stores_token_places_and_training_inputs_carry_them(tmp_path):
    src, out = tmp_path / "images", tmp_path / "features"
    write_synthetic_shards(src, samples=4, shards=1, seed=2)
    assert main(["prepare", str(src), str(out), "--config", "debug"]) == 0
    from safetensors.torch import load as load_bytes

    cfg = load_config("debug")
    cfg.data.caption_dropout = 0.0
    buckets = parse_buckets(cfg.data.buckets)
    enc = FrozenEncoders(cfg, torch.device("cpu"))
    image_records = list(TarSource(sorted(str(p) for p in src.glob("*.tar"))).records(0))
    for raw in iter_shard(sorted(out.glob("*.tar"))[0]):
        tensors = load_bytes(raw[FEATURES_EXT])
        assert tensors["places_dense"].shape == (tensors["text_dense"].shape[0], 2)
        assert tensors["places_brief"].shape == (tensors["text_brief"].shape[0], 2)
        record = record_of(raw)
        image = next(r for r in image_records if r.key == record.key)
        spans = image.grounding["dense"]
        expected = enc.text_places([image.dense], [spans])[0]
        same_places(tensors["places_dense"], expected)
        known = expected[~expected[:, 0].isnan()]
        assert {(round(x, 5), round(y, 5)) for x, y in known.tolist()} == {
            (round(x, 5), round(y, 5)) for _, _, x, y in spans
        }

    features = [
        decode_sample(r, 0, 0, buckets, cfg.data, 0)
        for r in TarSource(sorted(str(p) for p in out.glob("*.tar"))).records(0)
    ]
    images = [decode_sample(r, 0, 0, buckets, cfg.data, 0) for r in image_records]
    same = [f for f in features if f.bucket == features[0].bucket][:2]
    grounded = encode_microbatch(Microbatch(same, packed=False), enc, torch.device("cpu"), grounded=True)
    plain = encode_microbatch(Microbatch(same, packed=False), enc, torch.device("cpu"))
    assert plain.places is None and grounded.places.shape == (*grounded.text.shape[:2], 2)
    for i, s in enumerate(same):  # NaN over the padding
        assert grounded.places[i, s.text.shape[0] :].isnan().all()
    packed = encode_microbatch(Microbatch(images, packed=True), enc, torch.device("cpu"), grounded=True)
    assert packed.places.shape == (1, packed.text.shape[1], 2)
    by_key = {f.key: f.places for f in features}
    at = 0
    for s, n in zip(images, packed.text_lengths):  # the online path computes what prepare stored
        same_places(packed.places[0, at : at + n], by_key[s.key])
        at += n


def test_a_grounded_run_trains_and_its_pipeline_grounds_prompts(tmp_path):
    from lens.train.loop import train

    fast = ["train.steps=3", "log.eval_every=0", "log.sample_every=0", "log.tensorboard=false"]
    plain = train(load_config("debug", [*fast, f"run_dir={tmp_path / 'plain'}"]))
    summary = train(load_config("debug", [*fast, f"run_dir={tmp_path / 'run'}", "model.text_grounding=true"]))
    assert summary["step"] == 3 and all(math.isfinite(v) for v in summary["losses"])
    assert summary["losses"][0] != plain["losses"][0]  # the same batch, its text tokens elsewhere in RoPE
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "pipe")]) == 0
    from lens.inference import load_pipeline

    pipe = load_pipeline(str(tmp_path / "pipe"), device="cpu")
    assert pipe.transformer.config.text_grounding is True  # so the pipeline grounds its prompts


def _latents(pipe, prompt, **kw):
    gen = torch.Generator().manual_seed(0)
    return pipe(prompt, output_type="latent", generator=gen, num_inference_steps=2, **kw).images


def test_pipeline_grounding_is_off_for_lens_and_explicit_or_default_for_a_grounded_model():
    prompt = "a red circle and a blue star"
    phrases = [("a red circle", (0.2, 0.3)), ("a blue star", (0.8, 0.7))]
    lens = tiny_random_pipeline()
    assert lens.transformer.config.text_grounding is False
    plain = _latents(lens, prompt)
    assert torch.equal(plain, _latents(lens, GroundedPrompt(prompt, phrase_spans(prompt, phrases))))
    assert not torch.equal(plain, _latents(lens, prompt, grounding=phrases))  # asked for: grounded

    grounded = tiny_random_pipeline(text_grounding=True)
    centred = _latents(grounded, prompt)  # no layout: the whole prompt at the centre
    assert torch.equal(centred, _latents(grounded, prompt, grounding=[(prompt, (0.5, 0.5))]))
    by_phrases = _latents(grounded, prompt, grounding=[phrases])
    assert torch.equal(by_phrases, _latents(grounded, GroundedPrompt(prompt, phrase_spans(prompt, phrases))))
    assert not torch.equal(by_phrases, centred)

    with pytest.raises(LensError, match="entries for 2 prompts"):
        grounded([prompt, prompt], grounding=[phrases])
    with pytest.raises(LensError, match="not prompt_embeds"):
        embeds, mask = grounded.encode_prompt(prompt)
        grounded(prompt_embeds=embeds, prompt_mask=mask, grounding=[phrases])


def test_malformed_grounding_makes_the_sample_bad_not_the_run(tmp_path):
    from lens.source.base import BadSample, Record

    write_synthetic_shards(tmp_path, samples=1, shards=1, seed=4)
    good = next(TarSource(sorted(str(p) for p in tmp_path.glob("*.tar"))).records(0))
    cfg = load_config("debug")
    cfg.data.caption_dropout = 0.0
    buckets = parse_buckets(cfg.data.buckets)
    assert decode_sample(good, 0, 0, buckets, cfg.data, 0).spans  # the world's own spans decode
    for grounding, why in (
        ("not a dict", "must map caption names"),
        ({"dense": [[0, 10_000, 0.5, 0.5]]}, "outside the"),
        ({"dense": [[0, 4, 12.0, 0.5]]}, "image fractions"),
        ({"dense": [["a", "b"]]}, "not a \\(start, end, x, y\\) span"),
    ):
        bad = Record(good.key, good.dense, good.brief, image=good.image, grounding=grounding)
        with pytest.raises(BadSample, match=why):
            decode_sample(bad, 0, 0, buckets, cfg.data, 0)
