"""Run a function over work units: inline, on local processes (default), or on a Ray cluster.

`fn(unit: Unit, config: dict) -> dict` must be a module-level function (so spawned processes and Ray
workers can import it) and must write its own outputs; the executor only returns its small result
dicts, in completion order. Units and configs are JSON-serialisable, which is all Ray needs.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import sys
from collections.abc import Callable, Iterator

from lens.data.units import Unit
from lens.errors import LensError

EXECUTORS = ("local", "ray")


def _call(args: tuple[str, dict, dict]) -> dict:
    path, unit, config = args
    module, _, name = path.partition(":")
    fn = getattr(importlib.import_module(module), name)
    return fn(Unit.from_dict(unit), config)


def map_units(
    fn: Callable[[Unit, dict], dict],
    units: list[Unit],
    config: dict,
    *,
    workers: int = 1,
    executor: str = "local",
) -> Iterator[dict]:
    """Yield fn(unit, config) for every unit, as units finish."""
    if executor not in EXECUTORS:
        raise LensError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    path = f"{fn.__module__}:{fn.__qualname__}"
    jobs = [(path, u.to_dict(), config) for u in units]
    if executor == "ray":
        yield from _ray_map(jobs)
        return
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _call(job)
        return
    # fork is cheap, but forking a process that already runs torch's thread pools can deadlock
    ctx = mp.get_context("spawn" if "torch" in sys.modules else "fork")
    with ctx.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_call, jobs)


def _ray_map(jobs: list[tuple[str, dict, dict]]) -> Iterator[dict]:
    try:
        import ray
    except ImportError as err:
        raise LensError(
            "--executor ray needs Ray Data: pip install 'lens[ray]' (or use the default local)"
        ) from err
    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS if set, else starts a local cluster
    rows = [{"job": json.dumps(job)} for job in jobs]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))

    def task(row: dict) -> dict:
        return {"result": json.dumps(_call(tuple(json.loads(row["job"]))))}

    for row in ds.map(task).iter_rows():
        yield json.loads(row["result"])


def run_slice(
    fn: Callable[[Unit, dict], dict],
    units: list[Unit],
    config: dict,
    *,
    out_dir: str,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    executor: str = "local",
    overwrite: bool = False,
    desc: str = "units",
) -> list[dict]:
    """Run this slice's unfinished units with a progress bar; return their stats (finished ones skipped)."""
    import time

    from tqdm import tqdm

    from lens.data.units import is_done, select

    mine = select(units, shard)
    todo = [u for u in mine if overwrite or not is_done(out_dir, u.name)]
    if len(todo) < len(mine):
        print(f"{desc}: {len(mine) - len(todo)} of {len(mine)} shards already done (use --overwrite to redo)")
    results, images, start = [], 0, time.perf_counter()
    with tqdm(total=len(todo), desc=desc, unit="shard", dynamic_ncols=True) as bar:
        for res in map_units(fn, todo, config, workers=workers, executor=executor):
            results.append(res)
            images += int(res.get("counts", {}).get("seen", 0))
            bar.set_postfix(images=images, img_s=f"{images / max(time.perf_counter() - start, 1e-9):.1f}")
            bar.update(1)
    return results
