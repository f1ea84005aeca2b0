"""The experiment runner: a grid of cells (dataset x condition x seed), resumable, one scorer.

Run folder::

    config.yaml      the resolved config
    cells/<cell>/    per-cell work: results.jsonl and cell.json, written atomically when the cell
                     finishes (cell.json last: it marks the cell done), plus condition artifacts
    shared/          artifacts several cells share (fine-tuned checkpoints, generation caches)
    results.jsonl    one row per question per finished cell, in grid order
    cells.jsonl      one row per finished cell: timings and the condition's info
    summary.csv      dataset,split,condition,n,accuracy,stderr,chance

Resuming: the top-level files are rebuilt (atomically) from finished cells after every cell, so a run
killed at any moment (kill -9 included) and started again has no lost and no duplicated rows;
finished cells are not recomputed, and conditions reuse their checkpoints from ``shared/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from genmodes.conditions import get_condition, make_settings
from genmodes.conditions.base import CellContext, Timer
from genmodes.data.types import Dataset
from genmodes.errors import ConfigError
from genmodes.experiments.config import DatasetSpec, RunConfig, dump_config, load_config
from genmodes.report.provenance import cell_provenance, question_detail
from genmodes.scoring import Scorer, chosen

CELL_DONE = "cell.json"


@dataclass
class Cell:
    dataset: DatasetSpec
    condition: Any  # ConditionSpec
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset.name}__{self.condition.name}__s{self.seed}"


def grid(cfg: RunConfig) -> list[Cell]:
    """Cells in run order: seed, then dataset, then condition (the config's order)."""
    return [Cell(d, c, s) for s in cfg.seeds for d in cfg.datasets for c in cfg.conditions]


# ------------------------------------------------------------------------------------------ datasets

def build_dataset(spec: DatasetSpec) -> Dataset:
    """Generate / load / import a dataset, then restrict it to the configured splits and sizes."""
    from genmodes.data.io import content_hash, dataset_files, load_dataset

    if spec.family:
        from genmodes.data.families import make_dataset

        ds = make_dataset(spec.family, seed=spec.seed, overrides=spec.settings)
    elif spec.path:
        ds = load_dataset(spec.path)
    else:
        from genmodes.data.berglund import import_berglund

        ds = import_berglund(spec.berglund, seed=spec.seed)
    ds.meta["content_hash"] = content_hash(dataset_files(ds))
    qs = ds.questions
    if spec.splits is not None:
        unknown = sorted(set(spec.splits) - set(ds.splits))
        if unknown:
            raise ConfigError(f"dataset {spec.name!r}: unknown split(s) {unknown}; it has {ds.splits}")
        qs = [q for q in qs if q.split in spec.splits]
    if spec.max_per_split is not None:
        position = {q.id: i for i, q in enumerate(ds.questions)}
        kept = []
        for split in dict.fromkeys(q.split for q in qs):
            sq = [q for q in qs if q.split == split]
            if len(sq) > spec.max_per_split:
                # seeded by question id, so the same subset whatever the order of generation
                sq = sorted(sq, key=lambda q: hashlib.sha256(f"{spec.seed}-{q.id}".encode()).hexdigest())
                sq = sorted(sq[: spec.max_per_split], key=lambda q: position[q.id])
            kept.extend(sq)
        qs = kept
    ds.questions = qs
    return ds


# ------------------------------------------------------------------------------------------ io helpers

def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ running

class Runner:
    def __init__(self, cfg: RunConfig, out: Path, *, progress: bool = True, device: str | None = None,
                 model_cache: str | None = None, log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        self.device = device
        self.model_cache = model_cache
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._datasets: dict[str, Dataset] = {}

    # -- setup
    def init_folder(self) -> None:
        text = dump_config(self.cfg)
        cfg_path = self.out / "config.yaml"
        if cfg_path.exists():
            if cfg_path.read_text() != text:
                raise ConfigError(f"{self.out} holds a run of a different config; pass another --out "
                                  "(or delete the folder to start over)")
        elif self.out.exists() and any(self.out.iterdir()):
            raise ConfigError(f"{self.out} exists and is not a genmodes run folder; pass another --out")
        _write_atomic(cfg_path, text.encode())

    def dataset(self, spec: DatasetSpec) -> Dataset:
        if spec.name not in self._datasets:
            self._datasets[spec.name] = build_dataset(spec)
        return self._datasets[spec.name]

    def done(self, cell: Cell) -> bool:
        return (self.out / "cells" / cell.id / CELL_DONE).exists()

    # -- the grid
    def run(self) -> list[dict[str, Any]]:
        import torch

        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.init_folder()
        cells = grid(self.cfg)
        todo = [c for c in cells if not self.done(c)]
        if len(todo) < len(cells):
            self.log(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already finished")
        bar = None
        if self.progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", unit="cell",
                       dynamic_ncols=True)
        for cell in todo:
            if bar is not None:
                bar.set_postfix_str(cell.id)
            self.run_cell(cell)
            self.collect()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self.collect()

    def run_cell(self, cell: Cell) -> None:
        import torch

        ds = self.dataset(cell.dataset)
        kind = cell.condition.kind_
        settings = make_settings(kind, cell.condition.settings, where=cell.condition.name)
        workdir = self.out / "cells" / cell.id
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = CellContext(model_spec=self.cfg.model, dataset=ds, seed=cell.seed, workdir=workdir,
                          shared_dir=self.out / "shared", model_cache=self.model_cache,
                          device=self.device, progress=self.progress)
        torch.manual_seed(cell.seed)
        random.seed(cell.seed)
        t_start = time.perf_counter()
        with Timer() as t_prep:
            prepared = get_condition(kind).prepare(ctx, settings)
        tok = prepared.tokenizer
        prefix, context_for = prepared.prefix, prepared.context_for
        if self.cfg.scoring.chat_template and prepared.score_questions is None:
            from genmodes.chat import wrap

            prefix, context_for = wrap(tok, prefix, context_for)
        contexts = [context_for(q) for q in ds.questions]
        if prepared.score_questions is not None:  # a shortcut baseline: no model, no tokens
            scorer = None
            with Timer() as t_score:
                scores = prepared.score_questions(ds.questions)
            prefix_tokens = 0
        else:
            scorer = Scorer(prepared.model, tok, batch_tokens=self.cfg.scoring.batch_tokens)
            with Timer() as t_score:
                scores = scorer.score([(c, q.choices) for c, q in zip(contexts, ds.questions)],
                                      prefix=prefix, progress=self.progress, desc=cell.id)
            prefix_tokens = scorer.prefix_tokens(prefix)
        rows = []
        for q, ctx_text, sc in zip(ds.questions, contexts, scores):
            pick, pick_norm = chosen(sc), chosen(sc, normalized=True)
            rows.append({
                "cell": cell.id, "model": self.cfg.model, "dataset": cell.dataset.name, "family": ds.family,
                "split": q.split, "subtype": q.subtype, "condition": cell.condition.name,
                "condition_kind": kind, "seed": cell.seed, "question_id": q.id, "answer": q.answer,
                "chance": q.chance, "scores": [s.to_json() for s in sc], "chosen": pick,
                "chosen_norm": pick_norm, "correct": pick == q.answer, "correct_norm": pick_norm == q.answer,
                "context_tokens": (prefix_tokens + len(tok(ctx_text, add_special_tokens=False).input_ids)
                                   if tok is not None else 0),
                **question_detail(q, prepared),
            })
        info = dict(prepared.info)
        record = {"cell": cell.id, "model": self.cfg.model, "dataset": cell.dataset.name,
                  "condition": cell.condition.name, "condition_kind": kind, "seed": cell.seed,
                  "n_questions": len(rows),
                  "timings": {"prepare_s": round(t_prep.seconds, 3), "score_s": round(t_score.seconds, 3),
                              "total_s": round(time.perf_counter() - t_start, 3)},
                  "info": info, **cell_provenance(ds, prepared.model)}
        _write_atomic(workdir / "results.jsonl", _jsonl(rows))
        _write_atomic(workdir / CELL_DONE, (json.dumps(record, sort_keys=True, default=str) + "\n").encode())
        del prepared, scorer

    def collect(self) -> list[dict[str, Any]]:
        """Rebuild results.jsonl, cells.jsonl and summary.csv from the finished cells, in grid order."""
        from genmodes.report.summary import summarize, write_summary_csv

        rows, records = [], []
        for cell in grid(self.cfg):
            d = self.out / "cells" / cell.id
            if (d / CELL_DONE).exists():
                records.append(json.loads((d / CELL_DONE).read_text()))
                rows.extend(_read_jsonl(d / "results.jsonl"))
        _write_atomic(self.out / "results.jsonl", _jsonl(rows))
        _write_atomic(self.out / "cells.jsonl", _jsonl(records))
        summary = summarize(rows)
        write_summary_csv(summary, self.out / "summary.csv")
        return summary


def run(config_path: str | os.PathLike, out: str | os.PathLike | None = None, **kw: Any) -> tuple[Path, list]:
    cfg = load_config(config_path)
    out_dir = Path(out) if out else Path("runs") / cfg.name
    runner = Runner(cfg, out_dir, **kw)
    return out_dir, runner.run()


def clean_cell(out: Path, cell_id: str) -> None:
    """Forget one cell (its results and work folder); the next run recomputes it."""
    shutil.rmtree(Path(out) / "cells" / cell_id, ignore_errors=True)
