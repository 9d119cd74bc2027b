"""GenEval's scoring rules, applied to Nano-Eval detections (mirrors GenEval's evaluate_images.py).

- Detections per class are kept when their confidence exceeds 0.3 (0.9 for the counting tag), at
  most 16 per class, most confident first.
- Each include requirement needs its `count` most confident detections of the class; with a colour,
  that many of them must have that colour; with a position, every one of them must stand in the
  relation to every object matched by the include at `index` (GenEval's box-centre rule).
- An exclude requirement fails the image when the class has at least `count` detections.
- Score per tag = share of correct images; overall = mean of the tag scores.

`verdicts` gives each of those rules' pass / fail (the Nano-Eval reward's partial credit,
lens.rewards.nano); an image is correct when all pass (`evaluate`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass
class Verdict:
    """One rule of a prompt's metadata and whether an image passes it.

    Rules, in order: per include, its count, then its colour and its position when it names them; per
    exclude, its cap. A rule that builds on a failed one (the colour of objects that were not found)
    fails without a reason of its own.
    """

    rule: str  # e.g. "count circle>=2", "color red circle", "position star left of #0", "exclude circle<3"
    passed: bool
    reason: str = ""


def verdicts(detections: Iterable[Detection], metadata: dict) -> list[Verdict]:
    """Every rule's verdict for one image under GenEval's rules (see the module docstring)."""
    objects = keep_detections(detections, metadata["tag"])
    out: list[Verdict] = []
    matched_groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], int(req["count"])
        found = objects.get(cls, [])[:count]
        matched = len(found) >= count
        out.append(
            Verdict(
                f"count {cls}>={count}",
                matched,
                "" if matched else f"expected {cls}>={count}, found {len(found)}",
            )
        )
        if "color" in req:
            rule = f"color {req['color']} {cls}"
            colors = [d.color for d in found]
            if not matched:
                out.append(Verdict(rule, False))
            elif colors.count(req["color"]) < count:
                matched = False
                out.append(
                    Verdict(
                        rule,
                        False,
                        f"expected {req['color']} {cls}>={count}, found {colors.count(req['color'])} {req['color']}; and {', '.join(colors)}",
                    )
                )
            else:
                out.append(Verdict(rule, True))
        if "position" in req:
            relation, target = req["position"]
            rule = f"position {cls} {relation} #{target}"
            targets = matched_groups[target]
            if not matched:
                out.append(Verdict(rule, False))
            elif targets is None:
                matched = False
                out.append(Verdict(rule, False, f"no target for {cls} to be {relation}"))
            else:
                wrong = next(
                    (
                        true
                        for obj in found
                        for other in targets
                        if relation not in (true := relative_position(obj.bbox, other.bbox))
                    ),
                    None,
                )
                matched = wrong is None
                reason = (
                    ""
                    if matched
                    else f"expected {cls} {relation} target, found {' and '.join(sorted(wrong)) or 'no relation'}"
                )
                out.append(Verdict(rule, matched, reason))
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls, count = req["class"], int(req["count"])
        n = len(objects.get(cls, []))
        out.append(
            Verdict(
                f"exclude {cls}<{count}", n < count, "" if n < count else f"expected {cls}<{count}, found {n}"
            )
        )
    return out


def evaluate(detections: Iterable[Detection], metadata: dict) -> tuple[bool, str]:
    """(correct, reason) for one image under GenEval's rules: every rule passes; reason is empty when correct."""
    rules = verdicts(detections, metadata)
    return all(v.passed for v in rules), "\n".join(v.reason for v in rules if v.reason)


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
