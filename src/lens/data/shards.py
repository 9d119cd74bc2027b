"""Reading and writing WebDataset tar shards, deterministically and atomically.

The writer fixes mtime/owner so re-running a unit produces byte-identical shards (idempotent outputs),
and writes to `<name>.tmp` then renames, so a killed job never leaves a half shard under the final name.
The reader groups consecutive members by key (the WebDataset convention) and survives a truncated tar:
it yields what it could read and reports the damage instead of raising.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

from lens.errors import LensError


def split_name(name: str) -> tuple[str, str]:
    """'dir/abc.caption.txt' -> ('dir/abc', 'caption.txt'): the key ends at the basename's first dot."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, (ext if dot else "")


class ShardWriter:
    """Write samples (dicts of ext -> bytes plus '__key__') into one tar, atomically on close."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 (closed by close/abort)
        self.count = 0

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        if "." in key.rpartition("/")[2]:
            raise LensError(f"sample key {key!r} contains a dot; WebDataset would split it (use safe_key)")
        for ext in sorted(k for k in sample if not k.startswith("__")):
            data = sample[ext]
            if isinstance(data, str):
                data = data.encode()
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._tar.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.abort() if exc_type else self.close()


def iter_shard(path: str | Path, damage: list | None = None) -> Iterator[dict]:
    """Yield samples {'__key__', ext: bytes, ...} from a tar; a damaged tar ends early, noted in `damage`."""
    current: dict | None = None
    reading = None  # key of the member being read when an error strikes
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_name(member.name)
                if not ext or key.rpartition("/")[2].startswith("."):
                    continue  # a bare file or a hidden file (e.g. macOS '._x') is not part of a sample
                reading = key
                data = tar.extractfile(member).read()
                reading = None
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__url__": str(path)}
                current[ext] = data
    except (tarfile.TarError, EOFError, OSError) as err:
        if damage is not None:
            damage.append(f"{path}: {type(err).__name__}: {err}")
        # the sample being read when the tar broke may miss members: drop it, keep the one before
        if current is not None and current["__key__"] != reading:
            yield current
        return
    if current is not None:
        yield current


def list_shards(directory: str | Path) -> list[Path]:
    """The .tar shards of a directory, sorted; a LensError if there are none."""
    d = Path(directory)
    if not d.is_dir():
        raise LensError(f"{d} is not a directory; pass the output folder of the previous `lens data` step")
    shards = sorted(p for p in d.glob("*.tar") if p.is_file())
    if not shards:
        raise LensError(f"no .tar shards in {d}; run `lens data ingest` (or the previous step) first")
    return shards
