"""bench/generate.py runs end to end and prints its table (numbers are measured, not asserted)."""

import subprocess
import sys
from pathlib import Path

from lens.testing import tiny_random_pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "generate.py"


def test_the_generation_bench_prints_one_row_per_setting_against_the_first(tmp_path):
    model = tmp_path / "tiny"
    tiny_random_pipeline(height=32, width=32).save_pretrained(str(model))
    args = ["--setting", f"{model}:4:2", "--setting", f"{model}:2:1", "--repeats", "1", "--threads", "1"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {model}")]
    assert len(rows) == 2
    assert (
        rows[0].split("|")[2].strip() == "8" and rows[1].split("|")[2].strip() == "2"
    )  # passes: CFG doubles
    assert rows[0].rstrip().endswith("| 1.00x |")
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--setting", "nonsense"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "write MODEL:STEPS:GUIDANCE" in bad.stderr
