"""The caption ledger: an append-only JSONL record of every finished image, fsynced line by line.

A line is written only after the answer is in hand, so a restart skips every image that was paid for
(captioned or flagged) and re-requests only those that never finished. Each `--shard i/N` slice
appends to its own file; all files in the folder are read on start, so changing N keeps the work done.
A torn last line (a kill mid-write) is ignored and the file is re-terminated before the next append.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class Ledger:
    def __init__(self, directory: str | Path, shard: tuple[int, int] = (0, 1)):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"ledger-{shard[0]:05d}-of-{shard[1]:05d}.jsonl"
        self.done: dict[str, dict] = {}
        self.torn = 0
        for file in sorted(self.dir.glob("ledger-*.jsonl")):
            self._load(file)
        self._lock = threading.Lock()
        self._file = self.path.open("ab")
        if self._file.tell():
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")  # terminate a torn line so the next record starts cleanly

    def _load(self, file: Path) -> None:
        with file.open("rb") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    self.done[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):
                    self.torn += 1

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.done[record["key"]] = record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_) -> None:
        self.close()
