"""Work units and `--shard i/N`: how a data job is split across processes and machines.

A unit is the smallest independent piece of work: it reads a fixed set of inputs and writes exactly one
output shard named after the unit, plus `<name>.stats.json`. Units are listed in a deterministic order
(sorted inputs), and slice i of N takes units k with k % N == i, so any scheduler (a SLURM array, a
Kubernetes job index, a shell loop) can run slices anywhere, rerun them, and get the same files.
A unit whose stats file exists is finished and skipped unless `overwrite` is set.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lens.errors import LensError


@dataclass(frozen=True)
class Unit:
    """One output shard's worth of work. `items` are command-specific, JSON-serialisable references."""

    name: str
    kind: str
    items: tuple = field(default_factory=tuple)
    path: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "items": list(self.items), "path": self.path}

    @classmethod
    def from_dict(cls, d: dict) -> Unit:
        return cls(
            d["name"], d["kind"], tuple(tuple(i) if isinstance(i, list) else i for i in d["items"]), d["path"]
        )


def parse_shard(text: str | None) -> tuple[int, int]:
    """'3/8' -> (3, 8); None -> (0, 1). Indices are 0-based, like SLURM_ARRAY_TASK_ID."""
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise LensError(f"--shard must look like i/N (e.g. 0/8, or $SLURM_ARRAY_TASK_ID/8), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise LensError(f"--shard {text}: need 0 <= i < N and N >= 1 (i is 0-based)")
    return i, n


def select(units: list[Unit], shard: tuple[int, int]) -> list[Unit]:
    """This slice's units: the k-th unit (in listed order) belongs to slice k % N."""
    i, n = shard
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise LensError("duplicate unit names; inputs would overwrite each other's shards")
    return [u for k, u in enumerate(units) if k % n == i]


def stats_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.stats.json"


def is_done(out_dir: str | Path, name: str) -> bool:
    return stats_path(out_dir, name).is_file()


def printable(name: str) -> str:
    """A file or member name as valid UTF-8 text: bytes that are not UTF-8 become `\\xNN` escapes.

    Python hands such names over as lone surrogates, which no UTF-8 writer accepts; one of them in a
    sample's metadata used to abort the whole run.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def write_provenance(out_dir: str | Path, command: str, inputs: list[str], config: dict) -> None:
    """Record which step made `out_dir` and from what, so reports can follow the chain upstream."""
    write_json_atomic(
        Path(out_dir) / "provenance.json",
        {"command": command, "inputs": [printable(str(Path(p).resolve())) for p in inputs], "config": config},
    )
