"""A real run on tiny-random (the runner, not hand-written files) that report tests build reports from."""

from __future__ import annotations

import pytest

from genmodes.report import build_report

CONFIG = {
    "name": "paper-report", "model": "tiny-random", "seeds": [0],
    "datasets": [{"family": "simple_reversals", "settings": {"n_facts": 6, "articles_per_fact": 2}}],
    "conditions": [{"name": "pretrained"},
                   {"name": "finetune", "settings": {"steps": 2, "batch_size": 2, "seq_len": 64}},
                   {"name": "in_context"},
                   {"name": "rag", "kind": "retrieval", "settings": {"method": "oracle", "k": 1}},
                   {"name": "baseline_cooccurrence", "kind": "baseline", "settings": {"method": "cooccurrence"}}],
}


@pytest.fixture(scope="session")  # read-only for its users: one run serves every report test file
def tiny_run(tmp_path_factory):
    import torch

    from genmodes.experiments.config import parse_config
    from genmodes.experiments.runner import Runner

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "paper"
    Runner(parse_config(CONFIG), out, progress=False, log=lambda m: None).run()
    md, html = build_report(out)
    return out, md.read_text(), html.read_text()


