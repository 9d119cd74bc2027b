"""Parquet files as training records: a Hugging Face `datasets` folder (its on-disk format) or any
table with an image column and a caption column (read with pyarrow, `lens[train]`).

The image column holds `datasets`' Image struct ({bytes, path}), raw bytes, or a path (relative to
the file's folder); the caption columns hold text (a list of texts: the first). The column names are
`data.image_column`, `data.caption_column` and, optionally, `data.brief_column`. One part per row
group, so ranks split a single large file; a record's key is the file's stem and its row number. A
file that pyarrow cannot open is one damaged part.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lens.data.sample import safe_key
from lens.errors import LensError
from lens.source.base import Record, Source


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LensError("reading parquet needs pyarrow: pip install 'lens[train]'") from None
    return pq


def _text(value) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str):
        return None
    return value.strip() or None


class ParquetSource(Source):
    def __init__(self, paths: list[str], data_cfg, spec: str = ""):
        self.spec = spec or ",".join(paths)
        self.columns = [data_cfg.image_column, data_cfg.caption_column]
        if data_cfg.brief_column:
            self.columns.append(data_cfg.brief_column)
        self.parts, self._pieces = [], []  # pieces: (path, row group or None, its first row)
        pq = _pyarrow()
        for path in paths:
            try:
                file = pq.ParquetFile(path)
            except Exception:  # missing or not parquet (pyarrow's errors vary): read as a damaged part
                self.parts.append(path)
                self._pieces.append((path, None, 0))
                continue
            names = file.schema_arrow.names
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise LensError(
                    f"{path} has no column {missing[0]!r} (it has {', '.join(names)}); "
                    "set data.image_column / data.caption_column / data.brief_column"
                )
            first = 0
            for group in range(file.metadata.num_row_groups):
                self.parts.append(f"{path}#{group}")
                self._pieces.append((path, group, first))
                first += file.metadata.row_group(group).num_rows

    def records(self, part: int, damage: list[str] | None = None) -> Iterator[Record]:
        path, group, first = self._pieces[part]
        try:
            if group is None:
                raise OSError("not a readable parquet file")
            table = _pyarrow().ParquetFile(path).read_row_group(group, columns=self.columns)
        except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a broken file
            if damage is not None:
                damage.append(f"{path}: {type(err).__name__}: {err}")
            return
        columns = [table.column(c).to_pylist() for c in self.columns]
        stem = Path(path).stem
        for row, (image, dense, *brief) in enumerate(zip(*columns)):
            yield Record(
                safe_key(f"{stem}-{first + row:08d}"),
                _text(dense),
                _text(brief[0]) if brief else None,
                image=self._image_bytes(image, Path(path).parent),
            )

    @staticmethod
    def _image_bytes(value, folder: Path) -> bytes | None:
        """bytes from `datasets`' {bytes, path} struct, raw bytes or a path; None when there are none."""
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, str) and value:
            path = folder / value
            return path.read_bytes() if path.is_file() else None
        return value if isinstance(value, bytes) else None
