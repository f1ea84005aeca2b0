"""The experiment runner: a grid of cells (model x dataset x condition x seed), resumable, one scorer.

Run folder::

    config.yaml      the resolved config
    manifest.json    what produced the run: config hash, dataset content hashes, model weights hash,
                     package versions, git commit (records.RunManifest)
    cells/<cell>/    per-cell work: results.jsonl and cell.json, written atomically when the cell
                     finishes (cell.json last: it marks the cell done), plus condition artifacts.
                     <cell> is <dataset>__<condition>__s<seed>, with the model first
                     (<model>__<dataset>__<condition>__s<seed>) when the config lists several `models`
    shared/          artifacts several cells share (fine-tuned checkpoints, generation caches)
    results.jsonl    one row per question per finished cell, in grid order (records.ResultRow)
    cells.jsonl      one row per finished cell: timings, the condition's info (both stages'), its key
                     (records.CellRecord)
    summary.csv      model,dataset,split,condition,n,accuracy,stderr,chance

Every file is written from, and read back through, the models of :mod:`genmodes.experiments.records`.

Before the folder is made, everything that can be checked is (datasets and their splits, the model
spec, the device, LoRA target modules, document kinds), so a typo leaves nothing behind. The folder
is locked while a run works in it (``.lock`` names the pid); a second run on it stops with one line.
A folder whose config changed is refused only once a cell of it has finished: until then it holds
no result, so it is not "another run". A non-finite score stops the cell: it is never a number.

Resuming: the top-level files are rebuilt (atomically) from finished cells after every cell, so a run
killed at any moment (kill -9 included) and started again has no lost and no duplicated rows;
finished cells are not recomputed, and conditions reuse their checkpoints from ``shared/``.

Stale cells: each finished cell records a key, the hash of what its results depend on (the dataset's
content as scored, the condition's resolved settings, the model spec and weights hash unless it is a
model-free baseline, the seed, the scoring settings and precision). A rerun recomputes exactly the
cells whose key changed (a ``path:`` dataset regenerated with other contents, a model folder with new
weights, a changed default of a condition) and logs one line per cell saying what changed. A changed config.yaml is another run: refused once a
cell has finished, with one line naming what changed and how to start fresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from genmodes.conditions import prepare as prepare_condition
from genmodes.conditions.base import CellContext, Timer
from genmodes.data.types import Dataset
from genmodes.errors import ConfigError, DiskError, GenmodesError, NumericError
from genmodes.experiments import provenance
from genmodes.experiments.config import (DEFAULT_MODEL, DatasetSpec, RunConfig, dump_config, load_config,
                                         model_label)
from genmodes.experiments.records import (SCHEMA_VERSION, CellRecord, DatasetProvenance, ModelProvenance, ResultRow,
                                          RunManifest, Timings, dump, read_records, sha256_json)
from genmodes.io import (atomic_write, clean_stale_temps, disk_error_message, folder_lock, jsonl_bytes,
                         read_text, TEMP_RE)
from genmodes.scoring import Scorer, chosen, split_prefix

CELL_DONE = "cell.json"
MANIFEST = "manifest.json"


@dataclass
class Cell:
    dataset: DatasetSpec
    condition: Any  # ConditionSpec
    seed: int
    model: str = DEFAULT_MODEL
    model_in_id: bool = False  # a several-model grid: the model is part of the id

    @property
    def id(self) -> str:
        # a one-model grid keeps the ids it always had, so its runs resume and compare unchanged
        head = f"{model_label(self.model)}__" if self.model_in_id else ""
        return f"{head}{self.dataset.name}__{self.condition.name}__s{self.seed}"


@dataclass
class _Finished:
    stamp: int  # cell.json's mtime when read
    record: CellRecord
    rows: list[ResultRow]
    rows_bytes: bytes  # as results.jsonl lines
    record_bytes: bytes  # as a cells.jsonl line


def grid(cfg: RunConfig) -> list[Cell]:
    """Cells in run order: seed, then dataset, then condition, then model (the config's orders; a
    condition limited to some ``datasets`` skips the others). Models innermost, so a run stopped early
    still has every model's result for the cells it reached."""
    several = cfg.several_models
    return [Cell(d, c, s, m, several) for s in cfg.seeds for d in cfg.datasets for c in cfg.conditions
            if c.datasets is None or d.name in c.datasets for m in cfg.model_specs]


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
    seen: set[str] = set()
    for q in ds.questions:
        if q.id in seen:
            raise ConfigError(f"dataset {spec.name!r}: question id {q.id!r} appears twice; ids must be unique")
        seen.add(q.id)
    qs = ds.questions
    if not qs:
        raise ConfigError(f"dataset {spec.name!r}: has no questions; nothing to score")
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
    if not qs:
        raise ConfigError(f"dataset {spec.name!r}: no questions left in splits {spec.splits}")
    ds.questions = qs
    return ds


# ------------------------------------------------------------------------------------------ io helpers

def _jsonl(records: list[Any]) -> bytes:
    return jsonl_bytes(dump(r) for r in records)


def read_cell(workdir: Path) -> tuple[CellRecord, list[ResultRow]]:
    """A finished cell's record and rows, validated; a file that does not match the schema raises
    :class:`DataError` naming the file, line and field."""
    from genmodes.errors import DataError

    records = read_records(workdir / CELL_DONE, CellRecord)
    if len(records) != 1:
        raise DataError(f"{workdir / CELL_DONE}: {len(records)} records, expected one")
    return records[0], read_records(workdir / "results.jsonl", ResultRow)


def _describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two cells' key parts, in a few words."""
    said = []
    for part in sorted(set(old) | set(new)):
        a, b = old.get(part), new.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            bits = []
            for k in keys:
                x, y = a.get(k), b.get(k)
                if k.endswith("_hash") and isinstance(x, str) and isinstance(y, str):
                    bits.append(f"{k.removesuffix('_hash')} {x[:12]} -> {y[:12]}")  # a prefix tells them apart
                elif isinstance(x, dict) and isinstance(y, dict):
                    sub = sorted(j for j in set(x) | set(y) if x.get(j) != y.get(j))
                    bits.append(", ".join(f"{k}.{j} {x.get(j)!r} -> {y.get(j)!r}" for j in sub[:3]))
                else:
                    bits.append(f"{k} {x!r} -> {y!r}")
            said.append(f"{part} " + "; ".join(bits))
        else:
            said.append(f"{part} {a!r} -> {b!r}")
    return "; ".join(said) or "its key changed"


def _condition_key(cell: Cell) -> dict[str, Any]:
    """The condition's kind and its settings with every default filled in: a changed default changes
    the results, so it changes the key."""
    c = cell.condition.resolve()
    if c.model is None:
        return {"kind": c.kind, "settings": c.baseline.model_dump(mode="json")}
    return {"kind": c.kind, "model": {"kind": c.model, **c.model_settings.model_dump(mode="json")},
            "context": {"kind": c.context, **c.context_settings.model_dump(mode="json")}}


def _config_change(old_text: str, new_text: str) -> str:
    """The top-level config entries that differ (``seeds``, ``conditions``, ...)."""
    import yaml

    try:
        old, new = yaml.safe_load(old_text), yaml.safe_load(new_text)
    except yaml.YAMLError:
        return "config.yaml"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "config.yaml"
    return ", ".join(k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)) or "config.yaml"


def _finetune_settings(condition: Any) -> list[Any]:
    """The fine-tuning settings of a resolved condition's model stage (finetune, augmented_finetune)."""
    from genmodes.conditions.finetune import Settings as FT

    return [condition.model_settings] if isinstance(condition.model_settings, FT) else []


def _check_target_modules(model: Any, wanted: list[str], where: str) -> None:
    names = [n for n, _ in model.named_modules()]
    for t in wanted:
        if not any(n == t or n.endswith("." + t) for n in names):
            leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                             if n and not list(m.children())})
            raise ConfigError(f"{where}: target_modules: the model has no module {t!r} "
                              f"(its layers: {', '.join(leaves[:12])})")


# ------------------------------------------------------------------------------------------ running

class Runner:
    def __init__(self, cfg: RunConfig, out: Path, *, progress: bool = True, device: str | None = None,
                 model_cache: str | None = None, log: Callable[[str], None] | None = None,
                 dtype: str | None = None, executor: Any = None):
        self.cfg = cfg
        self.dtype = dtype  # auto | fp32 | bf16 (genmodes.models.resolve_dtype)
        self.executor = executor  # genmodes.experiments.executors: how cells run (default: here, in order)
        self.out = Path(out)
        self.progress = progress
        self.device = device
        self.model_cache = model_cache
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._datasets: dict[str, Dataset] = {}
        self._weights: dict[str, ModelProvenance] = {}
        self._finished: dict[str, _Finished] = {}

    # -- checks, before anything is written
    def validate(self) -> None:
        """Everything resolvable, checked before the run folder is made (issue 12): datasets with
        their contents and splits, the model spec and device, LoRA target modules, document kinds."""
        from genmodes.models import check_device, check_spec, resolve_dtype

        for d in self.cfg.datasets:
            self.dataset(d)
        check_device(self.device)
        resolve_dtype(self.dtype, self.device)
        resolved = [c.resolve(where=f"conditions[{i}]") for i, c in enumerate(self.cfg.conditions)]
        # model 'scratch' is built by the scratch model stage; every other model stage loads the cell's model
        stages = {c.name: r.model for c, r in zip(self.cfg.conditions, resolved) if r.model is not None}
        specs = self.cfg.model_specs
        if "scratch" in specs or "scratch" in stages.values():
            others = sorted({n for n, m in stages.items() if m != "scratch"})
            if "scratch" in specs and others:
                raise ConfigError(f"model 'scratch' is built by the scratch model stage (from_scratch) only; "
                                  f"condition(s) {', '.join(others)} need a pretrained model")
            if specs != ["scratch"]:
                mine = sorted(n for n, m in stages.items() if m == "scratch")
                raise ConfigError(f"condition(s) {', '.join(mine)}: the scratch model stage (from_scratch) builds "
                                  f"its own model: set the config's model to 'scratch' (got {', '.join(map(repr, specs))})")
        else:
            for spec in specs:
                check_spec(spec, self.model_cache)
        lora_models: dict[str, Any] = {}
        for i, (c, r) in enumerate(zip(self.cfg.conditions, resolved)):
            where = f"conditions[{i}] ({c.name})"
            for ft in _finetune_settings(r):
                if ft.kinds is not None:
                    for d in [d for d in self.cfg.datasets if c.datasets is None or d.name in c.datasets]:
                        have = {doc.kind for doc in self.dataset(d).documents}
                        if not have & set(ft.kinds):
                            raise ConfigError(f"{where}: kinds {ft.kinds}: dataset {d.name!r} has no documents "
                                              f"of these kinds (it has {', '.join(sorted(have)) or 'none'})")
                if ft.method == "lora" and ft.target_modules:
                    from genmodes.models import load_model

                    for spec in specs:
                        if spec not in lora_models:
                            lora_models[spec], _ = load_model(spec, device="cpu", cache=self.model_cache)
                        _check_target_modules(lora_models[spec], ft.target_modules,
                                              where + (f" on {spec}" if len(specs) > 1 else ""))

    # -- the folder
    def _finished_ids(self) -> list[str]:
        cells = self.out / "cells"
        try:
            return sorted(p.parent.name for p in cells.glob(f"*/{CELL_DONE}"))
        except OSError:
            return []

    def check_folder(self) -> str:
        """Whether the run may use its folder, writing nothing: "same" (this config's run),
        "replace" (an earlier attempt with no finished cell), "new" (absent, or empty). Raises
        :class:`ConfigError` for a folder that is another run or not a run folder."""
        text = dump_config(self.cfg)
        cfg_path = self.out / "config.yaml"
        if self.out.exists() and not self.out.is_dir():
            raise DiskError(f"cannot use {self.out} as the run folder: it is a file")
        if cfg_path.is_file():
            try:
                old = read_text(cfg_path, what="config")
            except GenmodesError:
                old = None
            if old == text:
                return "same"
            finished = self._finished_ids()
            if finished:
                changed = _config_change(old, text) if old is not None else "config.yaml"
                raise ConfigError(f"{self.out} holds a run of a different config (changed: {changed}; "
                                  f"{len(finished)} finished cell(s)); to start fresh pass another --out or "
                                  "delete the folder")
            return "replace"
        if cfg_path.exists() or cfg_path.is_symlink():
            raise ConfigError(f"{cfg_path} is not a file; pass another --out")
        else:
            try:
                entries = [e for e in os.listdir(self.out) if e != ".lock" and not TEMP_RE.match(e)]
            except FileNotFoundError:
                entries = []
            except OSError as e:
                raise DiskError(disk_error_message(e, self.out) or str(e)) from None
            if entries:
                raise ConfigError(f"{self.out} exists and is not a genmodes run folder; pass another --out")
        return "new"

    def init_folder(self) -> None:
        """Check the run folder and write config.yaml; call with the folder lock held."""
        state = self.check_folder()
        if state == "replace":
            # no finished cell: not another run, only an earlier attempt; its unfinished work is stale
            shutil.rmtree(self.out / "cells", ignore_errors=True)
        if state != "same":
            atomic_write(self.out / "config.yaml", dump_config(self.cfg))
        atomic_write(self.out / MANIFEST, json.dumps(dump(self.manifest()), indent=2, sort_keys=True) + "\n")

    def _make_folder(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as e:
            raise DiskError(f"cannot create the run folder {self.out}: "
                            f"{getattr(e, 'strerror', None) or e}") from None

    def dataset(self, spec: DatasetSpec) -> Dataset:
        if not self._datasets:
            # all at once: an rl stage's design (which questions train RL, which datasets are transfer)
            # changes what every condition is scored on, so it is applied before any cell reads one
            from genmodes.conditions.rl import apply_design

            built = {d.name: build_dataset(d) for d in self.cfg.datasets}
            apply_design(built, [r.model_settings for r in (c.resolve() for c in self.cfg.conditions)
                                 if r.model == "rl"])
            self._datasets.update(built)
        return self._datasets[spec.name]

    # -- provenance and cell keys
    def weights(self, spec: str) -> ModelProvenance:
        """A model spec and its weights hash, computed once per run (file hashes are also cached
        per machine, see :func:`provenance.weights_provenance`)."""
        if spec not in self._weights:
            self._weights[spec] = provenance.weights_provenance(spec, self.model_cache)
        return self._weights[spec]

    def resolved_dtype(self) -> str:
        from genmodes.models import resolve_dtype

        return resolve_dtype(self.dtype, self.device)

    def manifest(self) -> RunManifest:
        commit, dirty = provenance.git_commit()
        datasets = {}
        for d in self.cfg.datasets:
            ds = self.dataset(d)
            source = f"family:{d.family}" if d.family else (f"path:{d.path}" if d.path else f"berglund:{d.berglund}")
            datasets[str(d.name)] = DatasetProvenance(content_hash=ds.meta["content_hash"], source=source,
                                                      questions=len(ds.questions))
        config_hash = hashlib.sha256(dump_config(self.cfg).encode()).hexdigest()  # = sha256sum config.yaml
        return RunManifest(schema_version=SCHEMA_VERSION, name=self.cfg.name, config_hash=config_hash,
                           datasets=datasets, models=[self.weights(m) for m in self.cfg.model_specs],
                           versions=provenance.package_versions(),
                           git_commit=commit, git_dirty=dirty, started_at=provenance.now())

    def key_parts(self, cell: Cell) -> dict[str, Any]:
        """Everything a cell's results depend on (see the module docstring); its hash is the cell key."""
        ds = self.dataset(cell.dataset)
        spec = cell.dataset.model_dump(mode="json", exclude={"name"})
        w = self.weights(cell.model)
        uses_model = cell.condition.resolve().model is not None  # a shortcut baseline never loads the model
        return {"dataset": {"content_hash": ds.meta["content_hash"], **spec}, "condition": _condition_key(cell),
                "model": {"spec": w.spec, "weights_hash": w.weights_hash} if uses_model else None,
                "seed": cell.seed, "scoring": {**self.cfg.scoring.model_dump(mode="json"),
                                               "dtype": self.resolved_dtype()}}

    def _read_finished(self, cell: Cell) -> "_Finished":
        """A finished cell's validated record and rows, read once per process (``collect`` runs
        after every cell; re-reading every finished cell each time grew with the square of the grid)."""
        done = self.out / "cells" / cell.id / CELL_DONE
        stamp = done.stat().st_mtime_ns
        hit = self._finished.get(cell.id)
        if hit is None or hit.stamp != stamp:
            record, rows = read_cell(done.parent)
            hit = self._finished[cell.id] = _Finished(stamp, record, rows, _jsonl(rows), _jsonl([record]))
        return hit

    def stale(self, cells: list[Cell]) -> dict[str, str]:
        """Finished cells whose results no longer follow from the config and data: cell id -> why."""
        from genmodes.errors import DataError

        out = {}
        for cell in cells:
            if not self.done(cell):
                continue
            try:
                record = self._read_finished(cell).record
            except DataError as e:
                out[cell.id] = f"its record is unreadable or predates cell keys ({e})"
                continue
            parts = self.key_parts(cell)
            if record.key != sha256_json(parts):
                out[cell.id] = "changed since it was computed: " + _describe_change(record.key_parts, parts)
        return out

    def done(self, cell: Cell) -> bool:
        return (self.out / "cells" / cell.id / CELL_DONE).exists()

    def _all_done(self) -> bool:
        """A finished run of this very config and data: reading it changes nothing (works read-only)."""
        try:
            same = read_text(self.out / "config.yaml", what="config") == dump_config(self.cfg)
        except GenmodesError:
            return False
        cells = grid(self.cfg)
        return (same and (self.out / MANIFEST).is_file() and all(self.done(c) for c in cells)
                and not self.stale(cells))

    # -- the grid
    def run(self) -> list[dict[str, Any]]:
        import torch

        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        if self._all_done():
            self.log(f"resuming: {len(grid(self.cfg))} of {len(grid(self.cfg))} cells already finished")
            return self.collect()
        self.validate()
        self.check_folder()
        self._make_folder()
        with folder_lock(self.out):
            clean_stale_temps(self.out, depth=2)
            self.init_folder()
            return self._run_grid()

    def _run_grid(self) -> list[dict[str, Any]]:
        from genmodes.experiments.executors import LocalExecutor

        cells = grid(self.cfg)
        stale = self.stale(cells)
        for cell_id, why in stale.items():
            self.log(f"recomputing {cell_id}: {why}")
            clean_cell(self.out, cell_id)
            self._finished.pop(cell_id, None)
        if stale:
            self.collect()  # the top-level files no longer list the stale cells, even if killed now
        todo = [c for c in cells if not self.done(c)]
        if len(todo) < len(cells):
            self.log(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already finished")
        (self.executor or LocalExecutor()).run(self, cells, todo)
        return self.collect()

    def execute(self, cell: Cell) -> None:
        """Run one cell under the run's precision: what every executor calls."""
        from genmodes.models import precision

        with precision(self.resolved_dtype(), self.device):
            self.run_cell(cell)

    def run_cell(self, cell: Cell) -> None:
        import torch

        ds = self.dataset(cell.dataset)
        condition = cell.condition.resolve()
        kind = condition.kind
        workdir = self.out / "cells" / cell.id
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = CellContext(model_spec=cell.model, dataset=ds, seed=cell.seed, workdir=workdir,
                          shared_dir=self.out / "shared", model_cache=self.model_cache,
                          device=self.device, progress=self.progress,
                          datasets={d.name: self.dataset(d) for d in self.cfg.datasets},
                          dataset_name=cell.dataset.name)
        torch.manual_seed(cell.seed)
        random.seed(cell.seed)
        t_start = time.perf_counter()
        with Timer() as t_prep:
            try:
                prepared = prepare_condition(ctx, condition)
            except GenmodesError:
                raise
            except Exception as e:  # noqa: BLE001 - only filesystem failures are turned into a line
                msg = disk_error_message(e, workdir)
                if msg is None:
                    raise
                raise DiskError(f"cell {cell.id}: {msg}") from None
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
        for q, sc in zip(ds.questions, scores):
            bad = [s for s in sc if not math.isfinite(s.logprob)]
            if bad:
                hint = " (the training diverged: lower 'lr'?)" if prepared.info.get("loss_curve") is not None \
                    or prepared.info.get("train_seconds") else ""
                raise NumericError(f"cell {cell.id}: question {q.id!r}: the score of {bad[0].choice!r} is "
                                   f"{bad[0].logprob}, not a number{hint}; no result was written")
        rows = []
        for q, ctx_text, sc in zip(ds.questions, contexts, scores):
            pick, pick_norm = chosen(sc), chosen(sc, normalized=True)
            rows.append(ResultRow(
                cell=cell.id, model=cell.model, dataset=str(cell.dataset.name), family=ds.family,
                split=q.split, subtype=q.subtype, condition=cell.condition.name, condition_kind=kind,
                model_stage=condition.model, context_stage=condition.context, seed=cell.seed, question_id=q.id, answer=q.answer, chance=q.chance,
                scores=[s.to_json() for s in sc], chosen=pick, chosen_norm=pick_norm, correct=pick == q.answer,
                correct_norm=pick_norm == q.answer,
                context_tokens=(prefix_tokens + len(tok(split_prefix(prefix)[1] + ctx_text,
                                                        add_special_tokens=False).input_ids)
                                if tok is not None else 0),
                details=prepared.question_details.get(q.id, {}), **provenance.question_extras(q, prepared)))
        parts = self.key_parts(cell)
        record = CellRecord(
            cell=cell.id, model=cell.model, dataset=str(cell.dataset.name), condition=cell.condition.name,
            condition_kind=kind, model_stage=condition.model, context_stage=condition.context, seed=cell.seed,
            n_questions=len(rows),
            timings=Timings(prepare_s=round(t_prep.seconds, 3), score_s=round(t_score.seconds, 3),
                            total_s=round(time.perf_counter() - t_start, 3)),
            info=json.loads(json.dumps(prepared.info, default=str)), dataset_hash=ds.meta["content_hash"],
            versions=provenance.package_versions(),
            model_info=provenance.model_info(prepared.model) if prepared.model is not None else None,
            dtype=self.resolved_dtype() if prepared.model is not None else None,
            key=sha256_json(parts), key_parts=parts, finished_at=provenance.now())
        atomic_write(workdir / "results.jsonl", _jsonl(rows))
        atomic_write(workdir / CELL_DONE, json.dumps(dump(record), sort_keys=True) + "\n")
        from genmodes.conditions.tracking import log_cell_accuracy

        log_cell_accuracy(condition, workdir, cell.id, rows, record.info,
                          {"dataset": record.dataset, "condition": record.condition, "seed": cell.seed,
                           "model": cell.model})
        del prepared, scorer

    def collect(self) -> list[dict[str, Any]]:
        """Rebuild results.jsonl, cells.jsonl and summary.csv from the finished cells, in grid order."""
        from genmodes.experiments.summary import summarize, write_summary_csv

        rows: list[ResultRow] = []
        rows_bytes, records_bytes = [], []
        for cell in grid(self.cfg):
            if self.done(cell):
                read = self._read_finished(cell)
                rows.extend(read.rows)
                rows_bytes.append(read.rows_bytes)
                records_bytes.append(read.record_bytes)
        atomic_write(self.out / "results.jsonl", b"".join(rows_bytes), if_changed=True)
        atomic_write(self.out / "cells.jsonl", b"".join(records_bytes), if_changed=True)
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
