"""The `lens` command line: thin sub-commands that parse, validate and call the library.

Every module in this package that defines `register(subparsers)` becomes a sub-command, so adding a
command never touches this file. Heavy imports (torch, diffusers) happen inside the handlers, so
`lens --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from lens.errors import LensError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens", description="Lens text-to-image: generate, train, curate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LensError as err:
        print(f"lens {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
