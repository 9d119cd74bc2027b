"""Options that several sub-commands share (this module registers no command of its own)."""

from __future__ import annotations


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


CAPTION_STYLES = ("compact", "verbose")  # lens.world.captions.CAPTION_STYLES, not imported: --help stays fast


def add_caption_style(parser, what: str) -> None:
    """`--caption-style compact|verbose` into `args.caption_style` (default compact)."""
    parser.add_argument(
        "--caption-style",
        choices=CAPTION_STYLES,
        default="compact",
        help=f"style of {what}: compact (<= ~40 words, the default) or verbose (a ~130-word paragraph)",
    )
