"""Every benchmark in bench/ runs: its quick mode (tiny-random or small sizes, seconds) exits 0 and
prints the ratio line(s) its full mode prints, so a bench that breaks fails the suite. The full modes
and their figures are in docs/PERFORMANCE.md; no timing is asserted here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NUM = r"[0-9]+(?:\.[0-9]+)?"
# script -> (quick command's extra arguments, the lines its output must contain)
QUICK = {
    "scoring.py": (["--quick"], [rf"^speedup: {NUM}x \(same choices: yes\)$",
                                 rf"^per-question speedup: {NUM}x \(same choices: yes\)$"]),
    "finetune.py": (["--quick", "--trl", "--matched"], [rf"^ours vs TRL SFTTrainer: {NUM}x by CPU time",
                                                       rf"^ours vs Trainer \+ DataCollatorWithFlattening: {NUM}x",
                                                       rf"^speedup by CPU time: {NUM}x$", rf"^speedup: {NUM}x$"]),
    "lm_loss.py": (["--quick"], [rf"^full / tiled: CPU time {NUM}x, peak RSS {NUM}x$"]),
    "datagen.py": (["--quick"], [rf"^all 6 families \(quick sizes\): generate {NUM} s, audit {NUM} s; "
                                 rf"total / target \(30 s\): {NUM}$"]),
    "dtype_parity.py": (["--quick"], [rf"^cpu/fp32 +{NUM}% +100\.0% +0\.0000 +0\.00000 +1\.00$",
                                      rf"^cpu/bf16 +{NUM}% +{NUM}% +{NUM} +{NUM} +{NUM}$"]),
}


@pytest.fixture(scope="module")
def quick_runs() -> dict[str, subprocess.CompletedProcess]:
    """All quick benches at once (each one thread): the suite waits for the slowest, not their sum."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(
               os.pathsep) if p])}
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "bench" / name), *args], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _) in QUICK.items()}
    out = {}
    for name, p in procs.items():
        try:
            stdout, stderr = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def test_every_bench_script_has_a_quick_run_here():
    assert sorted(p.name for p in (ROOT / "bench").glob("*.py")) == sorted(QUICK)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_quick_bench_runs_and_prints_its_ratio(name, quick_runs):
    r = quick_runs[name]
    assert r.returncode == 0, f"{name} exited {r.returncode}:\n{r.stderr[-3000:]}"
    for pattern in QUICK[name][1]:
        assert re.search(pattern, r.stdout, re.M), f"{name}: no line matching {pattern!r} in\n{r.stdout}"
