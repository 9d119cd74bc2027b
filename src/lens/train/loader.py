"""The training loader: a source's parts -> shuffle buffer -> bucket batches or packs, with a saveable
position.

A source (`lens.source`) is a list of parts (shards, parquet row groups). Each rank reads its own
share of them (`order(epoch)[rank::world]`; with fewer parts than ranks every rank reads all parts and
keeps every world-th sample). Samples pass a shuffle buffer, then
either wait in per-bucket lists until one bucket holds its batch size (so a rank draws one bucket per
step, in proportion to the data) or fill a pack up to a token budget.

The position is exact: part cursor, samples read from the current part, the shuffle generator and
the references (part, key, epoch) of every sample waiting in a buffer. Restoring re-reads those few
samples from their parts. With a background prefetch thread the state handed out is the one that
belongs to the last batch the trainer consumed, not the last one produced.

Corrupt or missing parts (`bad_shards`) and undecodable samples are logged, skipped and counted (`stats`).
On a different number of processes see `merge_states`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from lens.errors import LensError
from lens.resolution import Bucket
from lens.source.base import BadSample, Record, Source
from lens.train.samples import Microbatch, Sample, decode_sample

log = logging.getLogger("lens.train")
STATE_VERSION = 1


@dataclass
class Cursor:
    epoch: int = 0
    assigned: list[int] = field(default_factory=list)  # part indices this rank reads this epoch
    cursor: int = 0  # index into assigned
    offset: int = 0  # raw samples already read from assigned[cursor]
    completed: list[int] = field(default_factory=list)
    finished_prev: list[int] = field(default_factory=list)  # last epoch's assignment (all read)
    stride: int = 1  # > 1 when there are fewer parts than ranks: keep every stride-th sample
    phase: int = 0
    partial: bool = False  # this epoch was re-split after a change of process count


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng([seed, epoch, 7919]).permutation(n)]


def merge_states(states: list[dict], rank: int, world: int, seed: int, n_shards: int) -> dict:
    """Position for `rank` of `world` from the saved states of a run with another process count.

    Kept: the epoch (the lowest among old ranks) and the sample counters. Parts that any old rank
    finished reading in that epoch are not read again; the remaining parts are split over the new
    ranks and partially read ones start again from their first sample. Samples that sat in old
    shuffle or bucket buffers are dropped for the rest of the epoch. Model and optimiser state are
    unaffected (they are resharded exactly by DCP).
    """
    epoch = min(s["cursor"]["epoch"] for s in states)
    done: set[int] = set()
    for s in states:
        c = s["cursor"]
        done.update(c["completed"] if c["epoch"] == epoch else c["finished_prev"])
    remaining = [i for i in epoch_order(seed, epoch, n_shards) if i not in done]
    counters = {k: sum(s["counters"][k] for s in states) for k in states[0]["counters"]}
    cursor = Cursor(epoch=epoch, partial=True)
    if n_shards >= world:
        cursor.assigned = remaining[rank::world]
    else:
        cursor.assigned, cursor.stride, cursor.phase = remaining, world, rank
    return {
        "cursor": asdict(cursor),
        "rng": None,
        "buffer": [],
        "pending": [],
        "lookahead": [],
        "counters": counters,
    }


class TrainLoader:
    def __init__(
        self,
        source: Source,
        buckets: list[Bucket],
        data_cfg,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        pack_tokens: int = 0,
        kind: str = "auto",
    ):
        self.source, self.buckets, self.cfg = source, buckets, data_cfg
        self.n_parts = len(source.parts)
        self.seed, self.rank, self.world = seed, rank, world
        self.packing, self.pack_tokens = bool(data_cfg.packing), pack_tokens
        self.kind = None if kind == "auto" else kind
        self.counters = {"samples": 0, "bad_samples": 0, "bad_shards": 0, "batches": 0}
        self.cursor = self._fresh_cursor(0)
        self.rng = np.random.default_rng([seed, rank, 104729])
        self.buffer: list[Sample] = []
        self.pending: dict[tuple[int, int], list[Sample]] = {}
        self.lookahead: list[Sample] = []  # decoded, not yet in the shuffle buffer
        self._pool: ThreadPoolExecutor | None = None
        self._resumed = False
        self._state = self._snapshot()
        self._gen: Iterator | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ position
    def _fresh_cursor(self, epoch: int) -> Cursor:
        order = epoch_order(self.seed, epoch, self.n_parts)
        if self.n_parts >= self.world:
            return Cursor(epoch=epoch, assigned=order[self.rank :: self.world])
        return Cursor(epoch=epoch, assigned=order, stride=self.world, phase=self.rank)

    def _snapshot(self) -> dict:
        pending = [s.ref for group in self.pending.values() for s in group]
        return {
            "version": STATE_VERSION,
            "world": self.world,
            "n_shards": self.n_parts,
            "cursor": copy.deepcopy(asdict(self.cursor)),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "buffer": [list(s.ref) for s in self.buffer],
            "pending": [list(r) for r in pending],
            "lookahead": [list(s.ref) for s in self.lookahead],
            "counters": dict(self.counters),
        }

    def state_dict(self) -> dict:
        """Position after the last batch handed out (JSON-able)."""
        return copy.deepcopy(self._state)

    @property
    def stats(self) -> dict:
        return dict(self._state["counters"])

    def load_state_dict(self, states: list[dict]) -> None:
        """Restore from the states of ALL ranks of the saved run (any process count)."""
        if self._gen is not None:
            raise RuntimeError("load_state_dict must be called before the first batch")
        if any(s.get("n_shards") != self.n_parts for s in states):
            log.warning("the data source changed since the checkpoint: the data loader starts a new epoch 0")
            return
        state = states[self.rank] if len(states) == self.world else None
        if state is None:
            log.warning(
                "resuming %d-process loader state on %d processes (see merge_states)", len(states), self.world
            )
            state = merge_states(states, self.rank, self.world, self.seed, self.n_parts)
        self.cursor = Cursor(**state["cursor"])
        if state["rng"] is not None:
            self.rng.bit_generator.state = state["rng"]
        self.counters = dict(state["counters"])
        self.buffer = self._materialize(state["buffer"])
        self.lookahead = self._materialize(state.get("lookahead", []))
        self._resumed = True
        for s in self._materialize(state["pending"]):
            self.pending.setdefault((s.bucket.height, s.bucket.width), []).append(s)
        self._state = self._snapshot()

    def _materialize(self, refs: list) -> list[Sample]:
        """Read the samples named by (part, key, epoch) refs again, in the given order."""
        # a buffer that spans an epoch boundary can hold one record twice (once per epoch), and the
        # epoch seeds the caption choice: decode each (part, key, epoch) on its own
        wanted: dict[int, dict[str, set[int]]] = {}
        for part, key, epoch in refs:
            wanted.setdefault(part, {}).setdefault(key, set()).add(epoch)
        found: dict[tuple[int, str, int], Sample] = {}
        for part, keys in wanted.items():
            for record in self.source.records(part):
                for epoch in keys.get(record.key, ()):
                    with contextlib.suppress(BadSample):  # counted when it was first read
                        found[(part, record.key, epoch)] = self._decode(record, part, epoch)
        kept = [found[tuple(ref)] for ref in refs if tuple(ref) in found]
        if len(kept) < len(refs):
            log.warning(
                "%d buffered samples could not be read again on resume; skipped", len(refs) - len(kept)
            )
        return kept

    # ------------------------------------------------------------------ production
    def _decode(self, record: Record, part: int, epoch: int) -> Sample:
        sample = decode_sample(record, part, epoch, self.buckets, self.cfg, self.seed)
        if self.kind is None:
            self.kind = sample.kind
        elif sample.kind != self.kind:
            raise BadSample(f"{sample.key}: a {sample.kind} sample among {self.kind} samples")
        return sample

    def _stream(self) -> Iterator[tuple]:
        """("sample", part, epoch, record) in reading order, and ("end", cursor) after each epoch."""
        while True:
            c = self.cursor
            while c.cursor < len(c.assigned):
                part = c.assigned[c.cursor]
                damage: list[str] = []
                for i, record in enumerate(self.source.records(part, damage)):
                    if i < c.offset:
                        continue
                    c.offset = i + 1
                    if c.stride == 1 or i % c.stride == c.phase:
                        yield "sample", part, c.epoch, record
                if damage:
                    self.counters["bad_shards"] += 1
                    log.warning("skipped damaged or missing shard: %s", damage[0])
                c.completed.append(part)
                c.cursor, c.offset = c.cursor + 1, 0
            yield "end", c
            self.cursor = self._fresh_cursor(c.epoch + 1)
            self.cursor.finished_prev = list(c.assigned)

    def _try_decode(self, item: tuple):
        if item[0] != "sample":
            return None
        try:
            return self._decode(item[3], item[1], item[2])
        except BadSample as err:
            return err

    def _decoded(self) -> Iterator[Sample]:
        """Usable samples in reading order. With data.workers > 1 a thread pool decodes chunks of the
        stream in parallel (PIL releases the GIL); decoded samples not handed on yet wait in
        `lookahead`, which is part of the saved position."""
        stream = self._stream()
        chunk = max(1, 4 * self.cfg.workers) if self.cfg.workers > 1 else 1
        good = 0
        while True:
            while self.lookahead:
                yield self.lookahead.pop(0)
            items = list(itertools.islice(stream, chunk))
            if self.cfg.workers > 1:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.cfg.workers, thread_name_prefix="lens-decode")
                results = list(self._pool.map(self._try_decode, items))
            else:
                results = [self._try_decode(item) for item in items]
            for item, result in zip(items, results):
                if item[0] == "end":
                    c = item[1]
                    if good == 0 and c.assigned and not c.partial and not self._resumed:
                        raise LensError(
                            f"rank {self.rank} read no usable sample in a whole epoch of {len(c.assigned)} parts "
                            f"(e.g. {self.source.parts[c.assigned[0]]}); check data.shards and the shard format"
                        )
                    good, self._resumed = 0, False
                elif isinstance(result, BadSample):
                    self.counters["bad_samples"] += 1
                    n = self.counters["bad_samples"]
                    if n <= 10 or n % 100 == 0:
                        log.warning("skipped sample (%d so far): %s", n, result)
                else:
                    good += 1
                    self.counters["samples"] += 1
                    self.lookahead.append(result)

    def _produce(self) -> Iterator[Microbatch]:
        for sample in self._decoded():
            self.buffer.append(sample)
            if len(self.buffer) < self.cfg.shuffle_buffer:
                continue
            j = int(self.rng.integers(len(self.buffer)))
            self.buffer[j], self.buffer[-1] = self.buffer[-1], self.buffer[j]
            batch = self._add(self.buffer.pop())
            if batch is not None:
                self.counters["batches"] += 1
                yield batch

    def _add(self, sample: Sample) -> Microbatch | None:
        if not self.packing:
            group = self.pending.setdefault((sample.bucket.height, sample.bucket.width), [])
            group.append(sample)
            if len(group) >= sample.bucket.batch_size:
                del self.pending[(sample.bucket.height, sample.bucket.width)]
                return Microbatch(group, packed=False)
            return None
        group = self.pending.setdefault((0, 0), [])
        tokens = sum(s.image_tokens for s in group)
        if group and tokens + sample.image_tokens > self.pack_tokens:
            self.pending[(0, 0)] = [sample]
            return Microbatch(group, packed=True)
        group.append(sample)
        if tokens + sample.image_tokens >= self.pack_tokens:
            del self.pending[(0, 0)]
            return Microbatch(group, packed=True)
        return None

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> Microbatch:
        if self._gen is None:
            self._gen = self._produce()
            if self.cfg.prefetch > 0:
                self._queue = queue.Queue(maxsize=self.cfg.prefetch)
                self._thread = threading.Thread(target=self._fill, daemon=True, name="lens-loader")
                self._thread.start()
        if self._queue is None:
            batch = next(self._gen)
            self._state = self._snapshot()
            return batch
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def _fill(self) -> None:
        try:
            for batch in self._gen:
                item = (batch, self._snapshot())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # hand the error to the consumer, which raises it
            self._queue.put(err)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
