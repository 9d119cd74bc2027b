"""The one writer of world shards: `png` image, `caption.txt` (dense, compact or verbose style),
`brief.txt` and `json` (the scene graph, `Scene.to_json`).

`lens world generate`, `lens nano build` and training's `data.shards=synthetic` all write through
`write_shards` (tar files by `lens.data.shards.ShardWriter`: deterministic, atomic), so the same world
sample is the same members and the same JSON wherever it was written. Sample i of a run with seed s
draws its scene from seed `sample_seed(s, i)`, so any sample can be re-made on its own, and two runs
with the same arguments write identical shards.
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image

from lens.data.sample import BRIEF_EXT, DENSE_EXT, META_EXT
from lens.data.shards import ShardWriter, iter_shard
from lens.errors import LensError
from lens.resolution import validate_size
from lens.text.grounding import GroundedPrompt
from lens.world.captions import CAPTION_STYLES, grounded_brief_caption, grounded_caption
from lens.world.render import render_scene
from lens.world.sampler import check_object_scale, sample_scene
from lens.world.scene import Scene

SHARD_PATTERN = "world-%06d.tar"


@dataclass
class WorldSample:
    key: str
    image: Image.Image
    caption: GroundedPrompt  # dense, with the spans of its object phrases
    brief: GroundedPrompt  # all of it at the salient object
    scene: Scene


def sample_seed(seed: int, index: int) -> int:
    return (int(seed) << 32) + int(index)


def make_sample(
    seed: int,
    index: int,
    height: int,
    width: int,
    geneval_fraction: float = 0.5,
    objects: int | None = None,
    caption_style: str = "compact",
    object_scale: float = 1.0,
) -> WorldSample:
    """Sample `index` of the run with `seed`: scene, image and both captions."""
    scene = sample_scene(sample_seed(seed, index), geneval_fraction, objects, object_scale)
    return WorldSample(
        key=f"{index:08d}",
        image=render_scene(scene, height, width),
        caption=grounded_caption(scene, style=caption_style),
        brief=grounded_brief_caption(scene),
        scene=scene,
    )


def png_bytes(image: Image.Image) -> bytes:
    """An image as PNG file bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sample_members(s: WorldSample) -> dict[str, bytes | str]:
    """The tar members of one world sample: the layout every world shard has. The json is the scene
    graph plus `grounding`: each caption's spans (`lens.text.grounding`, what `model.text_grounding`
    trains on)."""
    grounding = {"dense": [list(x) for x in s.caption.spans], "brief": [list(x) for x in s.brief.spans]}
    return {
        "__key__": s.key,
        "png": png_bytes(s.image),
        DENSE_EXT: str(s.caption),
        BRIEF_EXT: str(s.brief),
        META_EXT: json.dumps({**s.scene.to_dict(), "grounding": grounding}, sort_keys=True),
    }


def write_shards(
    out_dir: str,
    n: int,
    height: int = 64,
    width: int = 64,
    seed: int = 0,
    shard_size: int = 1000,
    geneval_fraction: float = 0.5,
    *,
    sizes: Sequence[tuple[int, int]] | None = None,
    start: int = 0,
    objects: int | None = None,
    caption_style: str = "compact",
    object_scale: float = 1.0,
) -> list[str]:
    """Write samples start .. start+n-1 to out_dir/world-000000.tar, ...; returns the shard paths.

    `shard_size` samples per shard (the last one may hold fewer). With `sizes`, sample i renders at
    sizes[i % len(sizes)] (a mixed-resolution set in every shard; repeat a size to weight it).
    Splitting 0..N-1 into ranges with `start` gives the same samples as one run, so a set can be
    written by several processes. `objects` = N: every scene is a free scene of exactly N objects (a
    curriculum stage) instead of the training mixture. `caption_style` is the dense caption's style
    ("compact" or "verbose", `lens.world.captions.CAPTION_STYLES`); `object_scale` multiplies every
    object's size (`lens.world.sampler.build_scene`).
    """
    sizes = list(sizes) if sizes else [(height, width)]
    for h, w in sizes:
        validate_size(h, w)
    if start < 0:
        raise LensError(f"start must be >= 0, got {start}")
    if n < 1 or shard_size < 1:
        raise LensError(f"--n ({n}) and --shard-size ({shard_size}) must be positive")
    if caption_style not in CAPTION_STYLES:
        raise LensError(f"unknown caption style {caption_style!r}; use one of {', '.join(CAPTION_STYLES)}")
    if not 0.0 <= geneval_fraction <= 1.0:
        raise LensError(f"geneval_fraction must be in 0..1, got {geneval_fraction}")
    check_object_scale(object_scale)
    os.makedirs(out_dir, exist_ok=True)
    if glob.glob(os.path.join(out_dir, "world-*.tar")):
        raise LensError(f"{out_dir} already holds world shards; pick an empty folder or delete them first")
    paths = []
    for first in range(start, start + n, shard_size):
        path = os.path.join(out_dir, SHARD_PATTERN % len(paths))
        with ShardWriter(path) as sink:
            for i in range(first, min(first + shard_size, start + n)):
                h, w = sizes[i % len(sizes)]
                sample = make_sample(seed, i, h, w, geneval_fraction, objects, caption_style, object_scale)
                sink.write(sample_members(sample))
        paths.append(path)
    return paths


def read_shards(path: str) -> Iterator[WorldSample]:
    """Samples back from a folder of shards or one .tar."""
    urls = sorted(glob.glob(os.path.join(path, "world-*.tar"))) if os.path.isdir(path) else [path]
    if not urls:
        raise LensError(
            f"no world-*.tar shards in {path}; write some with `lens world generate --out {path}`"
        )
    for url in urls:
        if not os.path.isfile(url):
            raise LensError(f"{url} is neither a folder of world shards nor a .tar file")
        for d in iter_shard(url):
            with Image.open(io.BytesIO(d["png"])) as image:
                rgb = image.convert("RGB")
            meta = json.loads(d[META_EXT].decode())
            spans = meta.get("grounding", {})  # shards written before grounding have none
            yield WorldSample(
                key=d["__key__"],
                image=rgb,
                caption=GroundedPrompt(d[DENSE_EXT].decode(), spans.get("dense", ())),
                brief=GroundedPrompt(d[BRIEF_EXT].decode(), spans.get("brief", ())),
                scene=Scene.from_dict(meta),
            )
