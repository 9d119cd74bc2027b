"""The curation executor on a real local Ray cluster gives what local processes give.

Ray is in the dev install (`lens[ray]`, which `.ci/run` installs): it is imported here unguarded, so
a missing Ray fails this file instead of skipping it.
"""

import json
import sys

import pytest
import ray

from lens.data.ingest import ingest_config, run_ingest
from lens.data.shards import list_shards
from lens.errors import LensError
from tests.test_data_helpers import BIG_PHOTOS, make_folder


@pytest.fixture(scope="module")
def local_ray():
    """A throwaway two-CPU cluster on this machine (no dashboard, no auth token written to ~/.ray)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


def _outputs(folder):
    shards = {p.name: p.read_bytes() for p in list_shards(folder)}
    stats = {p.name: json.loads(p.read_text()) for p in folder.glob("*.stats.json")}
    return shards, stats


def test_ray_executor_writes_what_the_local_executor_writes(tmp_path, local_ray):
    src = make_folder(tmp_path / "imgs", photos=BIG_PHOTOS[:2])  # with truncated / non-image files
    config = {name: ingest_config(str(tmp_path / name)) for name in ("local", "ray")}
    local = run_ingest([str(src)], config["local"], per_shard=3)
    on_ray = run_ingest([str(src)], config["ray"], per_shard=3, executor="ray")
    by_unit = {r["unit"]: r for r in on_ray}  # Ray yields in completion order
    assert len(local) == len(on_ray) == 2 and by_unit == {r["unit"]: r for r in local}
    assert sum(r["counts"].get("written", 0) for r in on_ray) == 2
    assert any(r["errors"] for r in on_ray)  # the broken files' messages came back from the workers
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")


def test_ray_executor_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    src = make_folder(tmp_path / "imgs", photos=("astronaut",), broken=False)
    with pytest.raises(LensError, match=r"lens\[ray\]"):
        run_ingest([str(src)], ingest_config(str(tmp_path / "o")), executor="ray")
