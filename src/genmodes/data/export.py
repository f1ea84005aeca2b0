"""Export a dataset for other tools: a Hugging Face ``DatasetDict`` or lm-evaluation-harness tasks.

Both outputs are written atomically (temporary folder, then rename), like dataset folders.
Nested fields (facts, premises, choice_facts, meta) are stored as JSON strings in the HF export so
every split has a flat, stable schema.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from genmodes.data.io import _swap_into_place, dumps, jsonl_bytes, write_atomic_dir
from genmodes.data.types import Dataset
from genmodes.errors import DataError

HF_MARKER = "dataset_dict.json"
LM_EVAL_MARKER = "genmodes_lm_eval.json"


def _check_dest(dest: Path, marker: str) -> None:
    if dest.exists():
        if not dest.is_dir():
            raise DataError(f"output {dest} exists and is not a folder")
        if any(dest.iterdir()) and not (dest / marker).exists():
            raise DataError(f"output folder {dest} exists and is not an export of this kind; refusing to replace it")


def hf_dataset_dict(ds: Dataset):
    import datasets

    if "documents" in ds.splits:
        raise DataError("a question split named 'documents' clashes with the documents table")
    parts = {"documents": datasets.Dataset.from_dict({
        "id": [d.id for d in ds.documents], "text": [d.text for d in ds.documents],
        "kind": [d.kind for d in ds.documents],
        "facts": [dumps([f.to_list() for f in d.facts]) for d in ds.documents],
        "meta": [dumps(d.meta) for d in ds.documents]})}
    for sp in ds.splits:
        qs = ds.split(sp)
        parts[sp] = datasets.Dataset.from_dict({
            "id": [q.id for q in qs], "subtype": [q.subtype for q in qs], "context": [q.context for q in qs],
            "choices": [list(q.choices) for q in qs], "answer": [q.answer for q in qs],
            "support": [list(q.support) for q in qs],
            "premises": [dumps([f.to_list() for f in q.premises]) for q in qs],
            "choice_facts": [dumps([None if f is None else f.to_list() for f in q.choice_facts]) for q in qs],
            "meta": [dumps(q.meta) for q in qs]})
    return datasets.DatasetDict(parts)


def to_hf(ds: Dataset, dest: str | os.PathLike) -> Path:
    """Save a ``DatasetDict`` (``documents`` + one split per question split); ``datasets.load_from_disk`` reads it."""
    out = Path(dest)
    _check_dest(out, HF_MARKER)
    dd = hf_dataset_dict(ds)
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        dd.save_to_disk(str(tmp / "dd"))
        os.replace(tmp / "dd", tmp / "final")
        _swap_into_place(tmp / "final", out)
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


def to_lm_eval(ds: Dataset, dest: str | os.PathLike, name: str | None = None) -> list[str]:
    """Write one multiple_choice task per split (plus a group of them) into ``dest``.

    Returns the task names, group last. The folder is self-contained and relocatable: the loader
    finds its data files relative to itself.
    """
    prefix = name or f"genmodes_{ds.family}"
    if not prefix.replace("_", "").replace("-", "").isalnum():
        raise DataError(f"lm-eval task name {prefix!r}: use letters, digits, '_' or '-'")
    out = Path(dest)
    _check_dest(out, LM_EVAL_MARKER)
    files: dict[str, bytes] = {"utils.py": _UTILS.encode()}
    tasks = []
    for sp in ds.splits:
        task = f"{prefix}_{sp}"
        tasks.append(task)
        files[f"data/{sp}.jsonl"] = jsonl_bytes(
            {"id": q.id, "subtype": q.subtype, "context": q.context, "choices": q.choices, "answer": q.answer}
            for q in ds.split(sp))
        files[f"{task}.yaml"] = _task_yaml(task, prefix, sp).encode()
    files[f"{prefix}.yaml"] = (f"group: {prefix}\ntask:\n" + "".join(f"  - {t}\n" for t in tasks)
                               + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
                               + "metadata:\n  version: 1.0\n").encode()
    files[LM_EVAL_MARKER] = (json.dumps({"family": ds.family, "seed": ds.seed, "tasks": tasks, "group": prefix},
                                        indent=2) + "\n").encode()
    write_atomic_dir(out, files, replace_any=True)
    return tasks + [prefix]
