"""Crash-safe checkpoints with torch.distributed.checkpoint (DCP).

Layout: `RUN_DIR/checkpoints/step_00001000/` holds DCP files for
- `model`, `optim` (FQN-keyed, via torch.distributed.checkpoint.state_dict, so FSDP shards of any
  process count load into any other), `ema` (same keys as model),
- `extra`: one JSON string with the step, LR and, for every rank, its loader position and RNG states.

Atomicity: every rank writes into `checkpoints/.tmp-step_XXXXXXXX/`; after a barrier rank 0 writes
`meta.json` and renames the folder to its final name (an atomic rename on POSIX filesystems; use a
shared filesystem across nodes). A kill at any moment leaves either the old set of checkpoints or the
old set plus the new one, never a half one under a final name; leftover temp folders are removed at
the next start. Only the last `keep` checkpoints are kept.

Resuming (`Checkpointer.resume`) loads the newest checkpoint that reads back whole and logs the damaged
ones it skipped (a disk that lost files, a copy cut short). A checkpoint whose weights do not fit the
model built from this config is not damage: that is a LensError at once, before any older one is tried.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from lens.errors import LensError
from lens.train.distributed import DistInfo, barrier, gather_objects

log = logging.getLogger("lens.train")
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / "meta.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():  # DCP warns that it runs without a process group (single process)
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        warnings.filterwarnings("ignore", message=".*assuming the intent is to.*")
        return fn(*args, **kwargs)


def load_dcp(state: dict, path: str | Path) -> None:
    _quiet(dcp.load, state, checkpoint_id=str(path))


def checkpoint_keys(path: str | Path) -> set[str]:
    return set(dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata)


def root_error(err: BaseException) -> BaseException:
    """The error a rank actually hit, out of DCP's CheckpointException (which wraps every rank's)."""
    if isinstance(err, CheckpointException) and err.failures:
        failure = next(iter(err.failures.values()))
        return failure[0] if isinstance(failure, tuple) else failure
    return err


def describe(err: BaseException) -> str:
    """'Type: first line' of an error for a log line; a bare EOFError says what it means."""
    text = str(err).strip().splitlines() or ["a file ends early"]
    return f"{type(err).__name__}: {text[0]}"


class DamagedCheckpoint(Exception):
    """A checkpoint folder that does not read back whole; resuming falls back to an older one."""


def _some(names: list[str]) -> str:
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def config_mismatch(path: Path, model_state: dict) -> str | None:
    """What differs between the model weights saved in `path` and `model_state` (None: they fit)."""
    try:
        saved_meta = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    except Exception as err:  # a missing or cut .metadata file: pickle, EOF and OS errors alike
        raise DamagedCheckpoint(f"unreadable metadata ({describe(err)})") from err
    saved = {
        k[6:]: tuple(m.size) for k, m in saved_meta.items() if k.startswith("model.") and hasattr(m, "size")
    }
    wanted = {k: tuple(v.shape) for k, v in model_state.items()}
    missing, extra = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
    reshaped = [k for k in sorted(wanted) if k in saved and saved[k] != wanted[k]]
    if missing:
        return f"it lacks {_some(missing)}"
    if extra:
        return f"it has {_some(extra)}, which this model lacks"
    if reshaped:
        k = reshaped[0]
        return f"{k} is {'x'.join(map(str, saved[k]))} there, {'x'.join(map(str, wanted[k]))} here"
    return None


class Checkpointer:
    def __init__(self, run_dir: str | Path, info: DistInfo, keep: int):
        self.root = Path(run_dir) / "checkpoints"
        self.info, self.keep = info, keep
        if info.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".tmp-step_*"):
                shutil.rmtree(stale, ignore_errors=True)
        barrier(info)

    def save(
        self, step: int, model, optim, ema, local_extra: dict, train_state: dict, kill_midway: bool = False
    ) -> Path:
        ranks = gather_objects(local_extra, self.info)  # every rank holds every rank's loader/RNG state
        extra = json.dumps({**train_state, "step": step, "world": self.info.world, "ranks": ranks})
        state = {
            "model": get_model_state_dict(model),
            "optim": get_optimizer_state_dict(model, optim),
            "extra": extra,
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        final = self.root / step_dir_name(step)
        tmp = self.root / f".tmp-{step_dir_name(step)}"
        if self.info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier(self.info)
        try:
            _quiet(dcp.save, state, checkpoint_id=str(tmp))
        except (CheckpointException, Exception):
            # every rank has stopped writing once DCP raises; give a full disk back what the try took
            if self.info.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        barrier(self.info)
        if kill_midway:  # fault injection: die with the files written but not committed
            os.kill(os.getpid(), signal.SIGKILL)
        if self.info.is_main:
            (tmp / "meta.json").write_text(json.dumps({"step": step, "world": self.info.world}) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for _, old in list_checkpoints(self.root.parent)[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.info)
        log.info("saved checkpoint %s", final)
        return final

    def resume(self, model, optim, ema) -> dict | None:
        """Load the newest intact checkpoint, logging the damaged ones skipped; None if there is none."""
        run_dir = self.root.parent
        skipped = []
        for _, path in reversed(list_checkpoints(run_dir)):
            try:
                extra = self.load(path, model, optim, ema)
            except DamagedCheckpoint as err:
                log.warning("skipping damaged checkpoint %s: %s", path, err)
                skipped.append(path.name)
                continue
            if skipped:
                log.warning(
                    "resumed from %s, the newest intact checkpoint; skipped %s", path.name, ", ".join(skipped)
                )
            return extra
        if skipped:
            raise LensError(
                f"every checkpoint in {self.root} is damaged ({', '.join(skipped)}; see {run_dir}/train.log); "
                "move them away to start from step 0, or pass another --run-dir"
            )
        return None

    def load(self, path: Path, model, optim, ema) -> dict:
        """Load into the (possibly sharded) model, optimiser and EMA; returns the parsed `extra`.

        Raises LensError if the checkpoint was saved by another model config, DamagedCheckpoint if its
        files do not read back.
        """
        msd = get_model_state_dict(model)
        mismatch = config_mismatch(path, msd)
        if mismatch:
            run_dir = self.root.parent
            raise LensError(
                f"{path} was saved with another model config ({mismatch}); resume with the run's own "
                f"config (lens train {run_dir / 'config.json'} --run-dir {run_dir} --resume) or pass a new --run-dir"
            )
        keys = checkpoint_keys(path)
        osd = get_optimizer_state_dict(model, optim)
        # parameters that never received a gradient (e.g. the last block's text-stream output) have no
        # optimiser state in the checkpoint; keep them freshly initialised instead of failing
        osd["state"] = {
            name: {k: v for k, v in st.items() if f"optim.state.{name}.{k}" in keys}
            for name, st in osd["state"].items()
            if any(f"optim.state.{name}.{k}" in keys for k in st)
        }
        state = {"model": msd, "optim": osd, "extra": ""}
        if ema is not None:
            if any(k.startswith("ema.") for k in keys):
                state["ema"] = ema.state_dict()
            else:
                log.warning("%s has no EMA weights: the EMA starts from the current weights", path)
        try:
            load_dcp(state, path)
            extra = json.loads(state["extra"])
        # DCP wraps every rank's error in CheckpointException, a BaseException: `except Exception` misses it
        except (CheckpointException, Exception) as err:
            raise DamagedCheckpoint(describe(root_error(err))) from err
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optim, state["optim"], options=StateDictOptions(strict=False))
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        elif ema is not None:
            ema.load_state_dict({n: p for n, p in zip(ema.names, ema.params)})
        log.info("resumed from %s", path)
        return extra
