"""One plotting approach (`lens.plots`, Pillow): bars and lines, used by reports, experiments and scripts."""

import numpy as np
from PIL import Image

from lens.plots import COLOURS, bar_chart, line_chart


def _colours(path) -> set[tuple[int, int, int]]:
    with Image.open(path) as im:
        return {tuple(int(c) for c in px) for px in np.asarray(im.convert("RGB")).reshape(-1, 3)}


def test_bar_chart_draws_one_colour_per_series(tmp_path):
    values = {("64x64", "dense"): 0.41, ("64x64", "brief"): 0.45, ("128x128", "dense"): 0.38}
    path = bar_chart(tmp_path / "bars.png", ["64x64", "128x128"], ["dense", "brief"], values, "loss")
    colours = _colours(path)
    assert COLOURS[0] in colours and COLOURS[1] in colours and COLOURS[2] not in colours
    hist = bar_chart(tmp_path / "h.png", [str(b) for b in range(20)], ["n"], {("3", "n"): 5.0}, label=None)
    assert Image.open(hist).size[0] >= 480


def test_line_chart_and_the_caption_experiment_plot(tmp_path):
    from lens.research.captions import plot

    path = line_chart(tmp_path / "l.png", {"a": [(0, 0.1), (300, 0.4)], "b": [(0, 0.2)]}, "t", "step", "y")
    assert {COLOURS[0], COLOURS[1]} <= _colours(path)
    rows = [{"step": 0, "dense/short": 0.1, "dense/reasoner": 0.2}, {"step": 300, "dense/short": 0.3}]
    out = plot(rows, tmp_path / "sub" / "captions.png", ("dense",))
    assert out.is_file() and {COLOURS[0], COLOURS[1]} <= _colours(out)
