"""Grouped bar chart of `lens eval text-gain --json` rows (PIL only: no matplotlib needed).

    python scripts/nano_loss_plot.py OUT.png ROWS.json [ROWS.json ...] --x size --series run \
        --value loss --where step=500 --title "..."

`--x` / `--series` name row fields (run, caption, size, step, weights); `--value` is `loss` (val loss),
`gain` (text gain = null - captioned) or `share` (gain / loss); `--where field=value` filters rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

VALUES = {
    "loss": lambda r: r["eval/val_loss"],
    "gain": lambda r: r["eval/text_gain"],
    "share": lambda r: r["eval/text_gain"] / r["eval/val_loss"],
}
COLOURS = [(66, 114, 196), (237, 125, 49), (112, 173, 71), (165, 105, 189), (128, 128, 128)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("rows", nargs="+")
    p.add_argument("--x", default="size")
    p.add_argument("--series", default="run")
    p.add_argument("--value", choices=sorted(VALUES), default="loss")
    p.add_argument("--where", nargs="*", default=[])
    p.add_argument("--title", default="")
    args = p.parse_args()
    rows = [r for path in args.rows for r in json.loads(Path(path).read_text())]
    for cond in args.where:
        key, value = cond.split("=", 1)
        rows = [r for r in rows if str(r[key]) == value]
    if not rows:
        raise SystemExit("no rows left after --where")
    xs = list(dict.fromkeys(str(r[args.x]) for r in rows))
    series = list(dict.fromkeys(str(r[args.series]) for r in rows))
    table = {(str(r[args.x]), str(r[args.series])): VALUES[args.value](r) for r in rows}
    top = max(table.values()) * 1.15

    title = args.title or f"{args.value} by {args.x} and {args.series}"
    W, H, left, bottom, head = max(480, 80 + 70 * len(xs) * len(series), 70 + 6 * len(title)), 360, 60, 50, 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 8), title, fill="black")
    plot_h = H - bottom - head
    for k in range(5):  # y grid and labels
        y = H - bottom - plot_h * k / 4
        d.line([(left, y), (W - 10, y)], fill=(225, 225, 225))
        d.text((4, y - 6), f"{top * k / 4:.3g}", fill="black")
    group_w = (W - left - 10) / len(xs)
    bar_w = group_w * 0.8 / len(series)
    for i, x in enumerate(xs):
        x0 = left + i * group_w + group_w * 0.1
        for j, s in enumerate(series):
            if (x, s) not in table:
                continue
            v = table[(x, s)]
            y = H - bottom - plot_h * v / top
            d.rectangle(
                [x0 + j * bar_w, y, x0 + (j + 1) * bar_w - 2, H - bottom], fill=COLOURS[j % len(COLOURS)]
            )
            d.text(
                (x0 + j * bar_w, y - 12), f"{v:.3f}" if args.value != "share" else f"{v:.0%}", fill="black"
            )
        d.text((x0, H - bottom + 6), x, fill="black")
    for j, s in enumerate(series):  # legend
        y = H - bottom + 24
        x0 = left + j * 200
        d.rectangle([x0, y, x0 + 10, y + 10], fill=COLOURS[j % len(COLOURS)])
        d.text((x0 + 14, y - 1), f"{args.series}: {s}", fill="black")
    img.save(args.out)
    print("saved", args.out)


if __name__ == "__main__":
    main()
