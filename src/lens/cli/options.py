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
