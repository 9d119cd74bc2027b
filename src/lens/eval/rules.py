"""GenEval's scoring rules, applied to Nano-Eval detections (mirrors GenEval's evaluate_images.py).

- Detections per class are kept when their confidence exceeds 0.3 (0.9 for the counting tag), at
  most 16 per class, most confident first.
- Each include requirement needs its `count` most confident detections of the class; with a colour,
  that many of them must have that colour; with a position, every one of them must stand in the
  relation to every object matched by the include at `index` (GenEval's box-centre rule).
- An exclude requirement fails the image when the class has at least `count` detections.
- Score per tag = share of correct images; overall = mean of the tag scores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from lens.eval.detect import Detection
from lens.world.geneval import TAGS
from lens.world.relations import relative_position

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16


def keep_detections(detections: Iterable[Detection], tag: str) -> dict[str, list[Detection]]:
    """Per class: detections above the tag's confidence threshold, most confident first, at most 16."""
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    by_class: dict[str, list[Detection]] = defaultdict(list)
    for d in sorted(detections, key=lambda d: -d.confidence):
        if d.confidence > threshold and len(by_class[d.cls]) < MAX_OBJECTS:
            by_class[d.cls].append(d)
    return dict(by_class)


def evaluate(detections: Iterable[Detection], metadata: dict) -> tuple[bool, str]:
    """(correct, reason) for one image under GenEval's rules; reason is empty when correct."""
    objects = keep_detections(detections, metadata["tag"])
    correct = True
    reasons: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], int(req["count"])
        found = objects.get(cls, [])[:count]
        matched = True
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = [d.color for d in found]
                if colors.count(req["color"]) < count:
                    correct = matched = False
                    reasons.append(
                        f"expected {req['color']} {cls}>={count}, found {colors.count(req['color'])} {req['color']}; and {', '.join(colors)}"
                    )
            if "position" in req and matched:
                relation, target = req["position"]
                targets = matched_groups[target]
                if targets is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    for obj in found:
                        for other in targets:
                            true = relative_position(obj.bbox, other.bbox)
                            if relation not in true:
                                correct = matched = False
                                reasons.append(
                                    f"expected {cls} {relation} target, found {' and '.join(sorted(true)) or 'no relation'}"
                                )
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls, count = req["class"], int(req["count"])
        if len(objects.get(cls, [])) >= count:
            correct = False
            reasons.append(f"expected {cls}<{count}, found {len(objects[cls])}")
    return correct, "\n".join(reasons)


def summarize(results: Iterable[dict]) -> dict[str, float]:
    """Per-tag share of correct images, and `overall` = mean of the tag scores present."""
    per_tag: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        per_tag[r["tag"]].append(bool(r["correct"]))
    scores = {tag: sum(v) / len(v) for tag in TAGS if (v := per_tag.get(tag))}
    scores.update({tag: sum(v) / len(v) for tag, v in per_tag.items() if tag not in scores})
    scores["overall"] = sum(scores.values()) / len(scores) if scores else 0.0
    return scores


def format_scores(scores: dict[str, float], counts: dict[str, int] | None = None) -> str:
    """A small table: one line per tag, then the overall score."""
    lines = [f"{'category':<14} {'score':>6}" + ("  images" if counts else "")]
    for tag, value in scores.items():
        if tag == "overall":
            continue
        lines.append(f"{tag:<14} {value:6.3f}" + (f"  {counts.get(tag, 0):6d}" if counts else ""))
    lines.append(f"{'overall':<14} {scores.get('overall', 0.0):6.3f}")
    return "\n".join(lines)
