"""Time per image of pipelines at their sampling settings, against the first setting (the baseline).

    python bench/generate.py --setting bundled:20:3 --setting runs/turbo:4:1 --threads 1

Each --setting is MODEL:STEPS:GUIDANCE (MODEL "bundled" = the bundled Lens-Nano). Every setting
generates the same prompt (the nano reasoner's compact caption of --prompt) at its native size, once
to warm up and then --repeats times; the table gives the minimum and median wall time per image, the
denoiser passes per image (steps, twice with CFG) and the median's ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lens.errors import LensError
from lens.inference import load_pipeline
from lens.world.reasoner import rewrite_prompt


def parse_setting(text: str) -> tuple[str | None, int, float]:
    try:
        model, steps, guidance = text.rsplit(":", 2)
        return (None if model == "bundled" else model), int(steps), float(guidance)
    except ValueError:
        raise LensError(f"--setting {text!r}: write MODEL:STEPS:GUIDANCE, e.g. bundled:20:3") from None


def time_setting(model, steps: int, guidance: float, prompt: str, repeats: int) -> list[float]:
    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    times = []
    for i in range(repeats + 1):  # the first call warms up
        t0 = time.perf_counter()
        pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(i),
        )
        times.append(time.perf_counter() - t0)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", action="append", required=True, help="MODEL:STEPS:GUIDANCE (repeatable)")
    parser.add_argument("--prompt", default="a photo of two red circles above a blue square")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompt = rewrite_prompt(args.prompt, style="compact")
    try:
        settings = [(text, *parse_setting(text)) for text in args.setting]  # all checked before any runs
    except LensError as err:
        parser.error(str(err))  # a one-line usage error, no traceback
    rows = []
    for text, model, steps, guidance in settings:
        times = time_setting(model, steps, guidance, prompt, args.repeats)
        rows.append((text, steps * (2 if guidance > 1 else 1), min(times), statistics.median(times)))
    base = rows[0][3]
    print(f"{args.threads} thread(s), {args.repeats} images per setting after a warm-up")
    print("| setting | denoiser passes | min s | median s | speed-up vs the first |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for text, passes, fastest, median in rows:
        print(f"| {text} | {passes} | {fastest:.3f} | {median:.3f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
