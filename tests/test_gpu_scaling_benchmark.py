"""benchmarks/gpu_scaling.py runs on a CPU at test sizes, and its levels scorer agrees with the prefix scorer."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_scaling.py"


def test_gpu_scaling_runs_on_a_cpu_with_tiny_architectures(tiny_model_dir, tmp_path):
    out = tmp_path / "gs.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tokenizer", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32",
         "--archs", "tiny-llama", "tiny-gemma3", "--sizes", "8", "16", "--raw", "2", "64", "--search-pool", "8",
         "--search-steps", "2", "--search-archs", "tiny-llama", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["layout"] == "groups"
    assert [r["arch"] for r in report["results"]] == ["tiny-llama", "tiny-gemma3"]
    for row in report["results"]:
        assert [e["n"] for e in row["evaluations"]] == [8, 16]
        for ev in row["evaluations"]:
            assert ev["levels_max_diff"] < 1e-4
            assert ev["levels_forwards"] <= 2 * math.log2(ev["groups"]) + 2 < ev["forwards"]
            assert ev["levels_seconds"] > 0 and ev["whole_prompt_tokens"] > ev["token_forwards"]
    searches = report["results"][0]["search"]
    assert {s["scorer"] for s in searches} == {"LevelBatchedScorer", "BatchedScorer", "PrefixSharingScorer"}
    assert "| levels scorer s (forwards) |" in done.stdout
