"""Grouped bar chart of `lens eval text-gain --json` rows (drawn by `lens.plots.bar_chart`).

    python scripts/nano_loss_plot.py OUT.png ROWS.json [ROWS.json ...] --x size --series run \
        --value loss --where step=500 --title "..."

`--x` / `--series` name row fields (run, caption, size, step, weights); `--value` is `loss` (val loss),
`gain` (text gain = null - captioned) or `share` (gain / loss); `--where field=value` filters rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lens.plots import bar_chart

VALUES = {
    "loss": lambda r: r["eval/val_loss"],
    "gain": lambda r: r["eval/text_gain"],
    "share": lambda r: r["eval/text_gain"] / r["eval/val_loss"],
}


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

    title = args.title or f"{args.value} by {args.x} and {args.series}"
    label = (lambda v: f"{v:.0%}") if args.value == "share" else (lambda v: f"{v:.3f}")
    series_names = [f"{args.series}: {s}" for s in series]
    values = {(x, f"{args.series}: {s}"): v for (x, s), v in table.items()}
    bar_chart(args.out, xs, series_names, values, title, args.value, label=label)
    print("saved", args.out)


if __name__ == "__main__":
    main()
