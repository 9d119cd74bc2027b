"""Options that several sub-commands share (this module registers no command of its own)."""

from __future__ import annotations

import math
from pathlib import Path

from lens.errors import LensError


def add_overrides(parser, what: str = "config field, e.g. --set optim.lr=1e-4") -> None:
    """`--set KEY=VALUE` (repeatable) into `args.overrides`, as `lens train` reads them."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a {what} (repeatable)",
    )


def add_run_options(parser, default_run_dir: str) -> None:
    """`--run-dir`, `--resume` and `--print-config`: how `lens train` and `lens rl` start a run."""
    parser.add_argument("--run-dir", help=f"run directory (default: {default_run_dir})")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in the run directory"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run_config(args, load, **fields):
    """CONFIG and --set through `load`, then --run-dir and the `fields` given (those set); None
    when --print-config has printed it instead."""
    import json

    cfg = load(args.config, args.overrides)
    for name, value in {"run_dir": args.run_dir, **fields}.items():
        if value:
            setattr(cfg, name, value)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return None
    return cfg


CAPTION_STYLES = ("compact", "verbose")  # lens.world.captions.CAPTION_STYLES, not imported: --help stays fast


def add_caption_style(parser, what: str) -> None:
    """`--caption-style compact|verbose` into `args.caption_style` (default compact)."""
    parser.add_argument(
        "--caption-style",
        choices=CAPTION_STYLES,
        default="compact",
        help=f"style of {what}: compact (<= ~40 words, the default) or verbose (a ~130-word paragraph)",
    )


def check_guidance(flag: str, values) -> None:
    """A LensError unless every CFG scale is a finite number.

    argparse's float() takes 'inf' and 'nan': inf gives a black image and nan switches CFG off, because
    every comparison with nan is false, and both used to exit 0.
    """
    for value in values if isinstance(values, list | tuple) else [values]:
        if value is not None and not math.isfinite(value):
            raise LensError(f"{flag} must be a finite number (e.g. 5, or 1 to turn CFG off), got {value}")


def check_output_folder(flag: str, path: str) -> Path:
    """`path` as a Path, or a LensError if it cannot become a folder: it, or the nearest existing
    path above it, is a file. Checked before any model loads, so a wrong --out costs nothing."""
    out = Path(path)
    existing = next(p for p in (out, *out.parents) if p.exists())  # '.' or '/' ends the walk
    if not existing.is_dir():
        raise LensError(f"{flag} {out}: {existing} is a file; pass a folder (it is created if missing)")
    return out


def make_output_folder(flag: str, out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LensError(
            f"{flag} {out}: cannot create the folder ({err.strerror or err}); pass another"
        ) from err
    return out
