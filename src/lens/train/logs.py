"""The run's log: `lens.train` messages on the console (rank 0 at INFO, the others at WARNING) and in
RUN_DIR/train.log (rank 0); `lens train`, `lens rl` and `lens distill` write it the same way."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("lens.train")


def setup_logging(run_dir: Path, is_main: bool) -> None:
    for h in [h for h in log.handlers if getattr(h, "_lens", False)]:
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.INFO if is_main else logging.WARNING)
    if is_main:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    for h in handlers:
        h._lens = True
        h.setFormatter(fmt)
        log.addHandler(h)


def close_logging() -> None:
    """Close the run's log file (RUN_DIR/train.log); the console handler stays."""
    for h in [h for h in log.handlers if getattr(h, "_lens", False) and isinstance(h, logging.FileHandler)]:
        log.removeHandler(h)
        h.close()
