"""Data pipeline throughput: images/s per core for ingest and the image-statistics filters.

Baseline in the same run: a plain PIL decode (`Image.open(f).convert("RGB")`) of the same files.
Images are scikit-image's real photos saved as JPEG (q90) at their own size (~0.25 Mpx) and upscaled
to 2 Mpx (a typical web / phone-resized photo). Everything runs in one process, so images/s = per core.

    python bench/data.py                 # throughput table
    python bench/data.py --calibrate     # threshold calibration table (docs/data.md)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from lens.data.filters.calibrate import PHOTOS, calibration_rows, photo
from lens.data.filters.runner import filter_config, filter_unit
from lens.data.ingest import ingest_config, ingest_unit
from lens.data.sources import plan_units
from lens.data.units import Unit

BENCH_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "camera",
    "immunohistochemistry",
    "gravel",
    "retina",
    "chelsea",
)


def make_images(folder: Path, n: int, megapixels: float | None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = [photo(name) for name in BENCH_PHOTOS]
    if megapixels:
        base = [im.resize(_size(im, megapixels), Image.BICUBIC) for im in base]
    paths = []
    for i in range(n):
        p = folder / f"{i:05d}.jpg"
        base[i % len(base)].save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def _size(im: Image.Image, mpx: float) -> tuple[int, int]:
    w, h = im.size
    s = (mpx * 1e6 / (w * h)) ** 0.5
    return round(w * s), round(h * s)


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(n: int, repeat: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, mpx in (("0.25 Mpx", None), ("2 Mpx", 2.0)):
            src = Path(tmp) / label.replace(" ", "")
            paths = make_images(src / "in", n, mpx)

            def decode_all(paths=paths):
                for p in paths:
                    Image.open(p).convert("RGB")

            units = plan_units([str(src / "in")], per_shard=n)
            ing_cfg = ingest_config(str(src / "raw"))
            filt_cfg = filter_config(str(src / "clean"), examples=0)
            shard = Unit("000000", "tar", path=str(src / "raw" / "000000.tar"))
            t_base = timed(decode_all, repeat)
            t_ing = timed(lambda u=units, c=ing_cfg: ingest_unit(u[0], c), repeat)
            t_fil = timed(lambda s=shard, c=filt_cfg: filter_unit(s, c), repeat)
            for step, t in (
                ("PIL decode (baseline)", t_base),
                ("ingest", t_ing),
                ("filter: stats stages", t_fil),
            ):
                rows.append(
                    {
                        "size": label,
                        "step": step,
                        "images": n,
                        "seconds": t,
                        "ips": n / t,
                        "ratio": t_base / t,
                    }
                )
            rows.append(
                {
                    "size": label,
                    "step": "ingest + filter",
                    "images": n,
                    "seconds": t_ing + t_fil,
                    "ips": n / (t_ing + t_fil),
                    "ratio": t_base / (t_ing + t_fil),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=3, help="best of R runs")
    ap.add_argument("--calibrate", action="store_true", help="print the threshold calibration table instead")
    args = ap.parse_args()
    if args.calibrate:
        print("| photo | variant | clarity | entropy | luminance |\n| --- | --- | ---: | ---: | ---: |")
        for r in calibration_rows(PHOTOS):
            print(
                f"| {r['photo']} | {r['variant']} | {r['clarity']:.1f} | {r['entropy']:.2f} | {r['luminance']:.3f} |"
            )
        return
    print(f"CPU: {os.cpu_count()} logical cores visible; one process (images/s = per core)\n")
    print("| size | step | images | seconds | images/s/core | speed vs PIL decode |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in bench(args.images, args.repeat):
        print(
            f"| {r['size']} | {r['step']} | {r['images']} | {r['seconds']:.2f} | {r['ips']:.1f} | {r['ratio']:.2f}x |"
        )


if __name__ == "__main__":
    main()
