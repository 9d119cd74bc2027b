"""Grounded captions: which characters of a caption name an object, and where that object is.

A span `(start, end, x, y)` says that characters [start, end) of the caption name an object centred
at (x, y), fractions of the image's width and height ((0, 0) = top left). `token_places` turns a
caption's spans into the denoiser's `encoder_places` (S, 2): the place of every text token whose
characters overlap a span, NaN for the others (the template's suffix, the background words), so a
grounded token takes its object's row and column in RoPE (`lens.model.rope.grounded_text_positions`).

Where spans come from: the shapes world writes them for its captions (`lens.world.grounded`), the
nano reasoner returns them with its rewrite (a `GroundedPrompt`: a `str` that carries its spans, so
it passes through any code that hands prompts on), and a pipeline call takes them as phrases and
places (`grounding=[[("a red circle", (0.25, 0.5)), ...]]`, as diffusers' GLIGEN takes phrases and
boxes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lens.errors import LensError

Span = tuple[int, int, float, float]  # [start, end) characters, (x, y) image fractions
CENTRE = (0.5, 0.5)


class GroundedPrompt(str):
    """A prompt that knows its spans: `GroundedPrompt("a red circle", [(0, 12, 0.3, 0.7)])`."""

    spans: tuple[Span, ...]

    def __new__(cls, text: str, spans: Sequence[Span] = ()):
        self = super().__new__(cls, text)
        self.spans = check_spans(spans, text)
        return self

    def __reduce__(self):  # keep the spans through pickling (eval worker processes)
        return (GroundedPrompt, (str(self), self.spans))


def check_spans(spans, text: str, what: str = "grounding") -> tuple[Span, ...]:
    """Spans as a tuple of (int, int, float, float), or LensError saying which one is wrong."""
    out = []
    for span in spans:
        try:
            start, end, x, y = span
            start, end, x, y = int(start), int(end), float(x), float(y)
        except (TypeError, ValueError):
            raise LensError(f"{what}: {span!r} is not a (start, end, x, y) span") from None
        if not 0 <= start < end <= len(text):
            raise LensError(
                f"{what}: characters {start}..{end} are outside the {len(text)}-character caption"
            )
        if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise LensError(f"{what}: place ({x}, {y}) must be image fractions in 0..1 (not pixels)")
        out.append((start, end, x, y))
    return tuple(out)


def phrase_spans(text: str, phrases: Sequence[tuple[str, Sequence[float]]]) -> tuple[Span, ...]:
    """[(phrase, (x, y)), ...] -> spans: each phrase is found in `text` after the previous one, so a
    phrase that occurs twice grounds its occurrences in order."""
    spans, at = [], 0
    for item in phrases:
        try:
            phrase, (x, y) = item
        except (TypeError, ValueError):
            raise LensError(f"grounding: {item!r} is not a (phrase, (x, y)) pair") from None
        if not isinstance(phrase, str) or not phrase.strip():
            raise LensError(f"grounding: the phrase of {item!r} must be non-empty text from the prompt")
        start = text.find(phrase, at)
        if start < 0:
            raise LensError(
                f"grounding: {phrase!r} is not in the prompt {text[:60]!r} (after character {at})"
            )
        spans.append((start, start + len(phrase), x, y))
        at = start + len(phrase)
    return check_spans(spans, text)


def whole_prompt(text: str, place: Sequence[float] = CENTRE) -> tuple[Span, ...]:
    """The whole prompt at one place: what a grounded model gets for a prompt without a layout
    (a one-object brief caption is grounded this way in the world's data)."""
    return ((0, len(text), float(place[0]), float(place[1])),) if text else ()


def token_places(tokenizer, template, prompt: str, spans: Sequence[Span], max_length: int):
    """(S, 2) float32 places of the prompt's valid tokens as `lens.text.encoder.encode_prompts` keeps
    them (after the template prefix, truncated to `max_length` with it); NaN = not grounded. A token
    overlapping two spans takes the first."""
    import torch

    spans = check_spans(spans, prompt)
    prefix = len(template.prefix_text())
    enc = tokenizer(
        template.render(prompt, allow_empty=True), add_special_tokens=False, return_offsets_mapping=True
    )
    n_prefix = template.prefix_length(tokenizer)
    offsets = enc["offset_mapping"][n_prefix:max_length]
    places = torch.full((len(offsets), 2), float("nan"))
    for i, (a, b) in enumerate(offsets):
        a, b = a - prefix, b - prefix  # characters of the prompt
        for start, end, x, y in spans:
            if a < end and start < b:
                places[i, 0], places[i, 1] = x, y
                break
    return places


def prompt_spans(prompt: str, phrases=None, grounded_model: bool = True) -> tuple[Span, ...] | None:
    """What a prompt is grounded with: `phrases` ([(phrase, (x, y)), ...]) if given; else, for a model
    trained grounded, a `GroundedPrompt`'s own spans or the whole prompt at the centre
    (`whole_prompt`); None: not grounded (the released layout)."""
    if phrases is not None:
        return phrase_spans(prompt, phrases)
    if not grounded_model:
        return None
    if isinstance(prompt, GroundedPrompt) and prompt.spans:
        return prompt.spans
    return whole_prompt(prompt)


def prompt_places(tokenizer, template, prompts, grounding, grounded_model: bool, max_length: int):
    """(S_i, 2) places (or None) per prompt, each grounded as `prompt_spans` says, with `grounding`
    one phrase list (or None) per prompt; None when nothing is grounded (no grounding asked for, and
    a model not trained grounded)."""
    if not (grounded_model or grounding):
        return None
    rows = []
    for prompt, phrases in zip(prompts, grounding or [None] * len(prompts), strict=True):
        spans = prompt_spans(prompt, phrases, grounded_model)
        rows.append(None if spans is None else token_places(tokenizer, template, prompt, spans, max_length))
    return rows


def pad_places(places, width: int):
    """(S_i, 2) places per row (None: not grounded) -> (B, width, 2) with NaN padding; None when no
    row is grounded."""
    import torch

    if all(p is None for p in places):
        return None
    out = torch.full((len(places), width, 2), float("nan"))
    for i, p in enumerate(places):
        if p is not None:
            out[i, : p.shape[0]] = p
    return out
