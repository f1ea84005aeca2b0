"""The grid of a study: its cells (model x dataset x condition x seed), its datasets as scored, and what
a cell's results depend on (its key). Torch-free: the report counts the grid with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from genmodes.data.types import Dataset
from genmodes.errors import ConfigError
from genmodes.experiments.config import DEFAULT_MODEL, DatasetSpec, Study, StudyCondition, model_label


@dataclass
class Cell:
    dataset: DatasetSpec
    condition: StudyCondition
    seed: int
    model: str = DEFAULT_MODEL
    model_in_id: bool = False  # a several-model grid: the model is part of the id

    @property
    def id(self) -> str:
        # a one-model grid keeps the ids it always had, so its runs resume and compare unchanged
        head = f"{model_label(self.model)}__" if self.model_in_id else ""
        return f"{head}{self.dataset.name}__{self.condition.name}__s{self.seed}"


def grid(study: Study) -> list[Cell]:
    """Cells in run order: seed, then dataset, then condition, then model (the config's orders; a
    condition limited to some ``datasets`` skips the others). Models innermost, so a run stopped early
    still has every model's result for the cells it reached."""
    several = study.several_models
    return [Cell(d, c, s, m, several) for s in study.seeds for d in study.datasets for c in study.conditions
            if c.runs_on(str(d.name)) for m in study.model_specs]


def find_cell(study: Study, cell_id: str) -> Cell:
    cell = next((c for c in grid(study) if c.id == cell_id), None)
    if cell is None:
        raise ConfigError(f"the run has no cell {cell_id!r}")
    return cell


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
        qs = _subsample(qs, ds.questions, spec)
    if not qs:
        raise ConfigError(f"dataset {spec.name!r}: no questions left in splits {spec.splits}")
    ds.questions = qs
    return ds


def _subsample(qs: list[Any], every: list[Any], spec: DatasetSpec) -> list[Any]:
    """At most ``max_per_split`` questions per split, seeded by question id (the same subset whatever
    the order of generation), in their original order."""
    position = {q.id: i for i, q in enumerate(every)}
    kept = []
    for split in dict.fromkeys(q.split for q in qs):
        sq = [q for q in qs if q.split == split]
        if len(sq) > spec.max_per_split:
            sq = sorted(sq, key=lambda q: hashlib.sha256(f"{spec.seed}-{q.id}".encode()).hexdigest())
            sq = sorted(sq[: spec.max_per_split], key=lambda q: position[q.id])
        kept.extend(sq)
    return kept


def study_datasets(study: Study) -> dict[str, Dataset]:
    """Every dataset of the study as its cells score it: built, then given to each stage's ``design``
    hook (with the settings of every condition that uses the stage), in the order stages first appear.
    A design changes what every condition is scored on (the rl stage's A/B split), so it runs before
    any cell reads a dataset."""
    datasets = {str(d.name): build_dataset(d) for d in study.datasets}
    for module, settings in _designs(study):
        datasets = module.design(datasets, settings)
    return datasets


def _designs(study: Study) -> list[tuple[Any, list[Any]]]:
    by_stage: dict[tuple[str, str | None], tuple[Any, list[Any]]] = {}
    for c in study.conditions:
        for role, kind, module, settings in c.stages.stages():
            if hasattr(module, "design"):
                by_stage.setdefault((role, kind), (module, []))[1].append(settings)
    return list(by_stage.values())


# ------------------------------------------------------------------------------------------ keys

def key_parts(cell: Cell, dataset: Dataset, weights: Any, scoring: dict[str, Any]) -> dict[str, Any]:
    """Everything a cell's results depend on: the dataset's content as scored and its spec, the
    condition's resolved settings, the model spec and weights hash (None for a model-free baseline),
    the seed, and the scoring settings with the precision. Its hash is the cell's key."""
    spec = cell.dataset.model_dump(mode="json", exclude={"name"})
    uses_model = not cell.condition.is_baseline
    return {"dataset": {"content_hash": dataset.meta["content_hash"], **spec}, "condition": cell.condition.stages.key(),
            "model": {"spec": weights.spec, "weights_hash": weights.weights_hash} if uses_model else None,
            "seed": cell.seed, "scoring": scoring}
