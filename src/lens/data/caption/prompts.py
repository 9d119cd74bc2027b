"""Caption prompts: the dense prompt Lens trains on, and a brief prompt for the paper's ablation.

The dense prompt asks for what REFERENCE section 8 lists for the Lens-800M captions (GPT-4.1, ~109
words on average): salient objects with attributes, counts, spatial relations and interactions, the
background, visible text verbatim in its own language, world knowledge (landmarks, characters, dishes),
English, one paragraph under 500 words, enough detail to reconstruct the image.
"""

from __future__ import annotations

from lens.errors import LensError

DENSE = """Describe this image in one detailed English paragraph, so that an artist who cannot see it could \
redraw it faithfully.
- Start with the main subjects. For each salient object give its attributes: colour, size, material, \
shape, texture, pose or expression.
- State exact counts ("three red apples", "two people") whenever you can count.
- Describe spatial relations (left of, behind, on top of, in the foreground) and interactions between \
subjects (who holds, looks at, rides or touches what).
- Describe the background and setting, the lighting, the time of day, the style (photo, painting, \
3D render, illustration) and the camera viewpoint.
- Transcribe any visible text verbatim, in its original language and script, inside double quotes, \
and say where it appears.
- Use world knowledge when you are confident: name recognisable landmarks, famous artworks, \
fictional characters, brands, animal breeds, plant species and dishes.
- Write plain prose: a single paragraph of about 80 to 150 words (more for very busy images, never \
more than 500 words), no lists, no headings, no preamble such as "This image shows", and no guesses \
about things that are not visible."""

BRIEF = """Write a brief English caption for this image in at most 12 words, naming only the main \
subject, like "a photo of a cat" or "a red car parked on a street". Reply with the caption only."""

PROMPTS = {"dense": DENSE, "brief": BRIEF}
# (min words, max words): shorter dense answers are retried (likely lazy); the paper's cap is 500 words
WORD_LIMITS = {"dense": (30, 500), "brief": (2, 40)}


def get_prompt(name: str) -> str:
    if name not in PROMPTS:
        raise LensError(f"unknown caption prompt {name!r}; choose one of {', '.join(PROMPTS)}")
    return PROMPTS[name]
