"""Export a dataset for other tools: the Hugging Face Hub layout or lm-evaluation-harness tasks.

It lives with the experiments, not with the data: a condition's export rebuilds what a finished run's
cell scored, through the conditions and the runner, which sit above the data layer.

Hub: parquet files with nested features and a dataset card, ``documents`` and ``questions`` as two
configs (their columns differ, so one config cannot hold both), loadable with ``load_dataset``.
lm-eval: one ``multiple_choice`` task per split, scored with genmodes' own protocol (choices as
continuations, no extra delimiter), optionally with the documents a condition puts before each
question in a finished run (:func:`to_lm_eval_condition`).

Both outputs are written atomically (temporary folder, then rename), like dataset folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from genmodes.data.io import jsonl_bytes, write_atomic_dir
from genmodes.data.types import Dataset
from genmodes.errors import DataError
from genmodes.io import replace_dir

HF_CARD = "README.md"
HF_TAG = "genmodes"  # in the card's tags: marks a folder this exporter may replace
LM_EVAL_MARKER = "genmodes_lm_eval.json"

# What to cite, by family (RESEARCH.md's sources).
P1 = ("Lampinen, Chaudhry, Chan et al. 2025, \"On the generalization of language models from in-context learning "
      "and finetuning: a controlled study\", arXiv:2505.00661")
P2 = ("Lampinen, Engelcke, Li, Chaudhry, McClelland 2025, \"Latent learning: episodic memory complements parametric "
      "learning by enabling flexible reuse of experiences\", arXiv:2509.16189")
B = "Berglund et al. 2023, \"The Reversal Curse\", arXiv:2309.12288"
PAPERS = {"simple_reversals": [P1], "simple_syllogisms": [P1], "semantic_structure": [P1],
          "reversal_curse": [P1, B], "berglund": [B, P1], "codebook": [P2], "relations": [P2],
          "imported": []}  # your own data (genmodes data import): its citation is yours to add


def _check_dest(dest: Path, marker: str) -> None:
    if dest.exists():
        if not dest.is_dir():
            raise DataError(f"output {dest} exists and is not a folder")
        if any(dest.iterdir()) and not (dest / marker).exists():
            raise DataError(f"output folder {dest} exists and is not an export of this kind; refusing to replace it")


def _check_hub_dest(dest: Path) -> None:
    if dest.exists():
        if not dest.is_dir():
            raise DataError(f"output {dest} exists and is not a folder")
        card = dest / HF_CARD
        ours = card.is_file() and f"- {HF_TAG}\n" in card.read_text(encoding="utf-8", errors="replace")
        if any(dest.iterdir()) and not ours:
            raise DataError(f"output folder {dest} exists and is not a genmodes Hub export; refusing to replace it")


# ------------------------------------------------------------------------------------------ Hugging Face Hub

def _list(feature):
    import datasets

    return datasets.List(feature) if hasattr(datasets, "List") else datasets.Sequence(feature)


def _fact_feature():
    import datasets

    return {"subject": datasets.Value("string"), "relation": datasets.Value("string"),
            "object": datasets.Value("string")}


def _fact(f) -> dict[str, str] | None:
    return None if f is None else {"subject": f.subject, "relation": f.relation, "object": f.object}


def _infer(values: list) -> object:
    """The datasets feature of a meta field from its values (None = missing)."""
    import datasets

    present = [v for v in values if v is not None]
    if not present:
        return datasets.Value("string")
    if all(isinstance(v, bool) for v in present):
        return datasets.Value("bool")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return datasets.Value("int64")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return datasets.Value("float64")
    if all(isinstance(v, str) for v in present):
        return datasets.Value("string")
    if all(isinstance(v, list) for v in present):
        return _list(_infer([x for v in present for x in v]))
    if all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: _infer([v.get(k) for v in present]) for k in keys}
    raise DataError(f"meta values of mixed types cannot form a column: {sorted({type(v).__name__ for v in present})}")


def _meta_feature(metas: list[dict]) -> dict | None:
    keys = list(dict.fromkeys(k for m in metas for k in m))
    return {k: _infer([m.get(k) for m in metas]) for k in keys} if keys else None


def fixed_choices(ds: Dataset) -> list[str] | None:
    """The one choice list every question shares (then the answer is a class label), else None."""
    first = ds.questions[0].choices if ds.questions else None
    return list(first) if first and all(q.choices == first for q in ds.questions) else None


def hub_tables(ds: Dataset) -> dict[str, object]:
    """``documents`` and one ``questions`` table per split, as ``datasets.Dataset`` with nested features:
    facts / premises / choice_facts are lists of {subject, relation, object}; ``meta`` a struct of the
    dataset's meta fields (absent when no row has any); ``answer`` a ClassLabel when choices are fixed."""
    import datasets

    if not ds.questions:
        raise DataError("the dataset has no questions to export")
    fact = _fact_feature()
    doc_meta = _meta_feature([d.meta for d in ds.documents])
    doc_feat = {"id": datasets.Value("string"), "text": datasets.Value("string"), "kind": datasets.Value("string"),
                "facts": _list(fact)}
    if doc_meta:
        doc_feat["meta"] = doc_meta
    docs = datasets.Dataset.from_list(
        [{"id": d.id, "text": d.text, "kind": d.kind, "facts": [_fact(f) for f in d.facts],
          **({"meta": {k: d.meta.get(k) for k in doc_meta}} if doc_meta else {})} for d in ds.documents],
        features=datasets.Features(doc_feat))
    fixed = fixed_choices(ds)
    q_meta = _meta_feature([q.meta for q in ds.questions])
    q_feat = {"id": datasets.Value("string"), "split": datasets.Value("string"), "subtype": datasets.Value("string"),
              "context": datasets.Value("string"), "choices": _list(datasets.Value("string")),
              "answer": datasets.ClassLabel(names=fixed) if fixed else datasets.Value("int64"),
              "support": _list(datasets.Value("string")), "premises": _list(fact), "choice_facts": _list(fact)}
    if q_meta:
        q_feat["meta"] = q_meta
    features = datasets.Features(q_feat)
    out = {"documents": docs}
    for sp in ds.splits:
        out[sp] = datasets.Dataset.from_list(
            [{"id": q.id, "split": q.split, "subtype": q.subtype, "context": q.context, "choices": list(q.choices),
              "answer": q.answer, "support": list(q.support), "premises": [_fact(f) for f in q.premises],
              "choice_facts": [_fact(f) for f in q.choice_facts],
              **({"meta": {k: q.meta.get(k) for k in q_meta}} if q_meta else {})} for q in ds.split(sp)],
            features=features)
    return out


def _split_name(sp: str) -> str:
    import re

    if not re.fullmatch(r"\w+(?:[-.]\w+)*", sp):
        raise DataError(f"split name {sp!r} is not a valid Hugging Face split name (letters, digits, _ - .)")
    return sp


def dataset_card(ds: Dataset, splits: list[str], license: str, content_hash: str) -> str:
    import yaml

    header = {
        "configs": [
            {"config_name": "questions", "default": True,
             "data_files": [{"split": sp, "path": f"questions/{sp}-*.parquet"} for sp in splits]},
            {"config_name": "documents", "data_files": [{"split": "train", "path": "documents/train-*.parquet"}]},
        ],
        "license": license,
        "language": ["en"],
        "task_categories": ["multiple-choice"],
        "tags": [HF_TAG, "synthetic", "generalization", ds.family],
        "pretty_name": f"genmodes {ds.family} (seed {ds.seed})",
        "size_categories": ["n<1K" if len(ds.questions) < 1000 else "1K<n<10K" if len(ds.questions) < 10000 else "10K<n<100K"],
    }
    desc = str(ds.meta.get("description") or "").strip()
    papers = PAPERS.get(ds.family, [P1])
    counts = "\n".join(f"| {sp} | {len(ds.split(sp))} | {ds.chance(sp):.3f} |" for sp in splits)
    settings = yaml.safe_dump(ds.config, sort_keys=True, allow_unicode=True).strip() or "{}"
    recall = ds.meta.get("recall_splits")
    return f"""---
{yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip()}
---

# genmodes `{ds.family}`, seed {ds.seed}

{desc or "A contamination-free dataset generated by genmodes."}

Generated by genmodes, family `{ds.family}` with seed {ds.seed}: the same family,
settings and seed give byte-identical data. Content hash (sha256 of the dataset's data files, as
`genmodes data show` prints it): `{content_hash}`.

## Configs

- `questions` (default): one split per question split. Each question is scored by likelihood: the
  `choices` are continuations of `context` (never shown together); `answer` is the index of the
  correct one. `support` lists the ids of the training documents stating the `premises` needed to
  answer; `choice_facts[i]` is the fact choice i asserts (null where a choice is not one fact).
- `documents` (split `train`): the training documents a model may learn from (fine-tuning, or in
  context), with the `facts` each states.

| split | questions | chance |
|---|---:|---:|
{counts}

{"Recall splits (the trained direction; the others test generalization): " + ", ".join(map(str, recall)) + "." if recall else ""}

```python
from datasets import load_dataset
questions = load_dataset("PATH_OR_REPO", "questions")
documents = load_dataset("PATH_OR_REPO", "documents", split="train")
```

## Generator settings

```yaml
family: {ds.family}
seed: {ds.seed}
{settings}
```

{_citation(papers)}"""


def _citation(papers: list[str]) -> str:
    if not papers:
        return ""
    return "## Citation\n\nPlease cite:\n\n" + "\n".join(f"- {p}" for p in papers) + "\n"


def to_hf(ds: Dataset, dest: str | os.PathLike, license: str | None = None) -> Path:
    """Write the Hugging Face Hub layout into ``dest``: ``README.md`` (dataset card with its YAML
    header), ``questions/<split>-00000-of-00001.parquet`` and ``documents/train-00000-of-00001.parquet``.
    ``datasets.load_dataset(dest, "questions")`` reads it locally and, once pushed, from the Hub."""
    from genmodes.data.io import content_hash, dataset_files

    out = Path(dest)
    _check_hub_dest(out)
    splits = [_split_name(sp) for sp in ds.splits]
    tables = hub_tables(ds)
    h = content_hash(dataset_files(ds))
    lic = license or ("other" if ds.family == "berglund" else "apache-2.0")
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        final = tmp / "final"
        (final / "questions").mkdir(parents=True)
        (final / "documents").mkdir()
        import datasets

        was_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # one "Creating parquet" bar per file is noise
        try:
            tables["documents"].to_parquet(str(final / "documents" / "train-00000-of-00001.parquet"))
            for sp in splits:
                tables[sp].to_parquet(str(final / "questions" / f"{sp}-00000-of-00001.parquet"))
        finally:
            if was_on:
                datasets.enable_progress_bars()
        (final / HF_CARD).write_text(dataset_card(ds, splits, lic, h), encoding="utf-8")
        replace_dir(final, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_UTILS = '''"""Loader for the genmodes export beside this file (lm-eval calls it through custom_dataset)."""
import json
import os

import datasets


def load(split=None, **kwargs):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", f"{split}.jsonl")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {"test": datasets.Dataset.from_list(rows)}
'''


def _task_yaml(task: str, group: str, split: str) -> str:
    # target_delimiter "": our choices carry their own leading space.
    return f"""# genmodes export: split {split!r}. Run: lm_eval --tasks {task} --include_path <this folder> --model hf ...
task: {task}
tag: {group}_tag
custom_dataset: !function utils.load
dataset_kwargs:
  split: {json.dumps(split)}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def lm_eval_batch_size(request_tokens: list[int], batch_tokens: int | None = None) -> int:
    """A ``--batch_size`` for lm-eval that puts about as many tokens in one forward pass as genmodes'
    scorer does (``scoring.batch_tokens``): lm-eval pads each batch to its longest request (context
    plus choice), so the longest request decides. lm-eval's default of 1 is many times slower."""
    from genmodes.experiments.config import ScoringSpec

    budget = batch_tokens or ScoringSpec().batch_tokens
    longest = max(request_tokens, default=1)
    return max(1, min(64, budget // max(1, longest)))


def estimated_batch_size(ds: Dataset, contexts: dict[str, str] | None = None) -> int:
    """:func:`lm_eval_batch_size` without a tokenizer (a dataset export names no model): two characters
    a token, fewer than English averages, so nonsense words do not make the batch too large."""
    contexts = contexts or {}
    return lm_eval_batch_size([len(contexts.get(q.id, q.context) + c) // 2 + 1 for q in ds.questions
                               for c in q.choices])


def to_lm_eval(ds: Dataset, dest: str | os.PathLike, name: str | None = None,
               contexts: dict[str, str] | None = None, extra: dict | None = None,
               files_extra: dict[str, bytes] | None = None) -> list[str]:
    """Write one multiple_choice task per split (plus a group of them) into ``dest``.

    ``contexts`` maps a question id to the full text placed before its choices (a condition's
    documents, then the question); default: the question's own context. Returns the task names,
    group last. The folder is self-contained and relocatable: the loader finds its data files
    relative to itself.
    """
    prefix = name or f"genmodes_{ds.family}"
    if not prefix.replace("_", "").replace("-", "").isalnum():
        raise DataError(f"lm-eval task name {prefix!r}: use letters, digits, '_' or '-'")
    out = Path(dest)
    _check_dest(out, LM_EVAL_MARKER)
    files: dict[str, bytes] = {"utils.py": _UTILS.encode(), **(files_extra or {})}
    contexts = contexts or {}
    tasks = []
    for sp in ds.splits:
        task = f"{prefix}_{sp}"
        tasks.append(task)
        files[f"data/{sp}.jsonl"] = jsonl_bytes(
            {"id": q.id, "subtype": q.subtype, "context": contexts.get(q.id, q.context), "choices": q.choices,
             "answer": q.answer}
            for q in ds.split(sp))
        files[f"{task}.yaml"] = _task_yaml(task, prefix, sp).encode()
    files[f"{prefix}.yaml"] = (f"group: {prefix}\ntask:\n" + "".join(f"  - {t}\n" for t in tasks)
                               + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
                               + "metadata:\n  version: 1.0\n").encode()
    files[LM_EVAL_MARKER] = (json.dumps({"family": ds.family, "seed": ds.seed, "tasks": tasks, "group": prefix,
                                         **(extra or {})}, indent=2) + "\n").encode()
    write_atomic_dir(out, files, replace_any=True)
    return tasks + [prefix]


# ------------------------------------------------------------------------------------------ a condition of a run

def _read_cells(run: Path) -> list[Any]:
    from genmodes.experiments.records import CellRecord, read_records

    path = run / "cells.jsonl"
    return read_records(path, CellRecord) if path.is_file() else []


def _pick(run_dir: Any, study: Any, condition: str, dataset: str | None, seed: int | None) -> tuple[Any, Any, int]:
    """The run's condition, dataset spec and seed an export names (one line naming what is missing)."""
    from genmodes.errors import ConfigError

    conds = {c.name: c for c in study.conditions}
    if condition not in conds:
        raise ConfigError(f"{run_dir}: no condition {condition!r} (have: {', '.join(conds)})")
    dss = {d.name: d for d in study.datasets}
    if dataset is None and len(dss) > 1:
        raise ConfigError(f"{run_dir}: the run has several datasets; pass --dataset ({', '.join(dss)})")
    if dataset is not None and dataset not in dss:
        raise ConfigError(f"{run_dir}: no dataset {dataset!r} (have: {', '.join(dss)})")
    spec = dss[dataset] if dataset is not None else next(iter(dss.values()))
    seed = study.seeds[0] if seed is None else seed
    if seed not in study.seeds:
        raise ConfigError(f"{run_dir}: no seed {seed} (have: {', '.join(map(str, study.seeds))})")
    return conds[condition], spec, seed


def _check_exportable(run_dir: Any, study: Any, cond: Any, lm_eval: bool = True) -> None:
    """What an export cannot rebuild: several models; for lm-eval also a baseline (no language model)
    and a model with its own tokenizer."""
    from genmodes.conditions import model_stage
    from genmodes.errors import ConfigError

    if study.several_models:
        raise ConfigError(f"{run_dir}: the run has several models ({', '.join(study.model_specs)}); the lm-eval "
                          "and inspect exports cover one-model runs")
    if not lm_eval:
        return
    if cond.is_baseline:
        raise ConfigError(f"{cond.name!r} is a baseline (no language model): nothing for lm-eval to score")
    own = getattr(model_stage(cond.stages.model), "OWN_MODEL", None)
    if own:
        raise ConfigError(f"a model the {cond.stages.model} model stage builds itself (model {own!r}) has its own "
                          "tokenizer; lm-eval export covers model stages that start from a loadable model, "
                          "with any context stage")


def condition_contexts(run_dir: str | os.PathLike, condition: str, dataset: str | None = None,
                       seed: int | None = None, device: str | None = None, lm_eval: bool = True):
    """Rebuild exactly what a finished cell of a run scored: the datasets as the run scored them (splits,
    ``max_per_split`` subsample, every stage's design), the text before each question's choices (the
    condition's shared prefix and per-question context, e.g. retrieved documents), and the model (a
    fine-tuned checkpoint is reused from the run's ``shared/`` folder, never retrained).

    ``lm_eval``: refuse what lm-eval cannot score (a baseline, a model with its own tokenizer); without
    it a baseline's contexts are its questions' own (model, tokenizer and model Info None).

    Returns (dataset, {question id: context}, model, tokenizer, cell record, the model stage's Info)."""
    import yaml

    from genmodes.errors import ConfigError
    from genmodes.experiments.cell import prepare_cell
    from genmodes.experiments.config import parse_config
    from genmodes.experiments.grid import Cell, study_datasets

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run_dir}: not a run folder (no config.yaml)")
    study = parse_config(yaml.safe_load((run / "config.yaml").read_text()), source=str(run / "config.yaml"))
    cond, spec, seed = _pick(run_dir, study, condition, dataset, seed)
    _check_exportable(run_dir, study, cond, lm_eval)
    cell = Cell(spec, cond, seed, study.model_specs[0])
    record = next((c for c in _read_cells(run) if c.cell == cell.id), None)
    if record is None:
        raise ConfigError(f"{run_dir}: cell {cell.id} has not finished; run the config first "
                          "(the export reuses its checkpoints and must not train)")
    model_info = None if cond.is_baseline else cond.stages.read_infos(record.stages, record.info)["model"]
    for ckpt in model_info.checkpoints() if model_info is not None else ():
        if not Path(ckpt).is_dir():
            raise DataError(f"{cell.id}: its checkpoint {ckpt} is gone; rerun the config to recreate it")
    datasets = study_datasets(study)
    ds = datasets[str(spec.name)]
    if record.dataset_hash != ds.meta["content_hash"]:
        raise DataError(f"dataset {spec.name!r} rebuilt here differs from the one the run scored "
                        "(content hash mismatch): its source changed since the run")
    if cond.is_baseline:  # a baseline scores the questions as written
        return ds, {q.id: q.context for q in ds.questions}, None, None, record, None
    with tempfile.TemporaryDirectory(prefix="genmodes-export-") as work:
        ready = prepare_cell(study, cell, datasets, Path(work), run / "shared", device=device or "cpu",
                             progress=False)
    contexts = {q.id: ready.prefix + ready.context_for(q) for q in ds.questions}
    return ds, contexts, ready.prepared.model, ready.prepared.tokenizer, record, model_info


def _model_args(model, tok, dest: Path, files: dict[str, bytes]) -> str:
    """lm-eval ``--model_args`` naming the exact weights genmodes scored: the model's folder when it
    was loaded from one (a converted model, a full fine-tune checkpoint), a base folder plus the LoRA
    adapter (``peft=``), else (a model built in memory, like tiny-random) a copy saved beside the tasks."""
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        adapter = Path(getattr(model, "_genmodes_checkpoint", "") or "")
        base = model.get_base_model()
        base_dir = Path(str(getattr(base.config, "_name_or_path", "") or ""))
        if not adapter.is_dir():
            raise DataError("the LoRA adapter's folder is unknown; cannot point lm-eval at it")
        if not (base_dir.is_dir() and (base_dir / "config.json").is_file()):
            # the base weights without the LoRA layers peft injected (the adapter is loaded on top)
            base_dir = _save_model(model.unload(), tok, dest / "model")
        return f"pretrained={base_dir.resolve()},peft={adapter.resolve()},dtype=float32"
    where = Path(str(getattr(model.config, "_name_or_path", "") or ""))
    if where.is_dir() and (where / "config.json").is_file():
        return f"pretrained={where.resolve()},dtype=float32"
    return f"pretrained={_save_model(model, tok, dest / 'model')},dtype=float32"


def _save_model(model, tok, target: Path) -> Path:
    from transformers.utils import logging as hf_logging

    target.parent.mkdir(parents=True, exist_ok=True)
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(target))
        tok.save_pretrained(str(target))
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
    return target.resolve()


def to_lm_eval_condition(run_dir: str | os.PathLike, dest: str | os.PathLike, condition: str,
                         dataset: str | None = None, seed: int | None = None, name: str | None = None,
                         device: str | None = None) -> tuple[list[str], str, int]:
    """lm-eval tasks that score what a condition of a finished run scored: its questions (the run's
    subsample), the documents it put before each question, and a pointer to its model. Returns
    (task names with the group last, the ``--model_args`` to pass, a ``--batch_size``)."""
    ds, contexts, model, tok, record, model_info = condition_contexts(run_dir, condition, dataset, seed, device)
    batch_size = lm_eval_batch_size([len(tok(contexts[q.id] + c, add_special_tokens=False).input_ids)
                                     for q in ds.questions for c in q.choices],
                                    (record.key_parts.get("scoring") or {}).get("batch_tokens"))
    ckpts = model_info.checkpoints()
    if ckpts:
        model._genmodes_checkpoint = ckpts[0]
    out = Path(dest)
    _check_dest(out, LM_EVAL_MARKER)
    # a composed condition's name ("finetune+retrieval") as a task name lm-eval accepts
    prefix = name or re.sub(r"[^A-Za-z0-9_-]", "_", f"genmodes_{ds.family}_{condition}")
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    # the model copy (if any) is written into a staging folder, then moved with the tasks
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.model-", dir=parent))
    try:
        args = _model_args(model, tok, staging, {})
        final_args = args.replace(str((staging / "model").resolve()), str((out / "model").resolve()))
        from genmodes.experiments.gates import export_metadata, run_threshold

        extra = {"run": str(Path(run_dir).resolve()), "condition": condition, "cell": record.cell,
                 "model_args": final_args, "batch_size": batch_size, "questions": len(ds.questions),
                 **export_metadata(record, run_threshold(run_dir))}
        tasks = to_lm_eval(ds, out, name=prefix, contexts=contexts, extra=extra)
        if (staging / "model").is_dir():
            os.replace(staging / "model", out / "model")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tasks, final_args, batch_size
