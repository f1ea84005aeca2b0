"""Real runs on tiny-random (the runner, not hand-written files) that the report tests build reports
from, so a drift between what the runner writes and what the report reads fails here."""

from __future__ import annotations

import shutil

import pytest

from genmodes.report import build_report

FT = {"steps": 2, "batch_size": 2, "seq_len": 64}
DATASET = {"name": "rev", "family": "simple_reversals", "settings": {"n_facts": 6, "articles_per_fact": 2}}
CONFIG = {
    "name": "paper-report", "model": "tiny-random", "seeds": [0],
    "datasets": [DATASET],
    "conditions": [{"name": "pretrained"},
                   {"name": "finetune", "settings": FT},
                   {"name": "in_context"},
                   {"name": "rag", "kind": "retrieval", "settings": {"method": "oracle", "k": 1}},
                   {"name": "baseline_cooccurrence", "kind": "baseline", "settings": {"method": "cooccurrence"}},
                   {"name": "aug", "kind": "augmented_finetune",
                    "settings": {"max_new_tokens": 8, "finetune": FT, "verify": "in_context"}},
                   # a budget a few documents long: some questions lose their support
                   {"name": "icl_small", "kind": "in_context", "settings": {"budget_tokens": 400}}],
}
SCRATCH = {"name": "scratch-report", "model": "scratch", "seeds": [0], "datasets": [DATASET],
           "conditions": [{"name": "scratch", "kind": "from_scratch",
                           "settings": {"n_layers": 1, "d_model": 32, "n_heads": 2, "seq_len": 64, "batch_size": 4,
                                        "steps": 4, "eval_every": 2, "warmup_steps": 1}}]}


def run_config(config: dict, out):
    import torch

    from genmodes.experiments.config import parse_config
    from genmodes.experiments.runner import Runner

    torch.set_num_threads(1)
    Runner(parse_config(config), out, progress=False, log=lambda m: None).run()
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run folder, report.md, report.html) of CONFIG; treat the folder as read-only (see ``run_copy``)."""
    out = run_config(CONFIG, tmp_path_factory.mktemp("run") / "paper")
    md, html = build_report(out)
    return out, md.read_text(), html.read_text()


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of the tiny run's folder (without its report) that a test may change."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run[0], dst, ignore=shutil.ignore_patterns("report.*", "figures", "drilldown.html"))
    return dst


@pytest.fixture(scope="session")
def scratch_run(tmp_path_factory):
    return run_config(SCRATCH, tmp_path_factory.mktemp("run") / "scratch")
