"""Model stage ``finetune``: the dataset's knowledge goes into the parameters [P1, fine-tuning condition].

The training loop is :mod:`genmodes.training.finetune` (packed examples, AdamW, linear warmup and
decay; its docstring says why). This stage picks the training documents (``kinds``) and caches the
trained weights in a run-wide artifact folder keyed by the settings and a hash of the texts (not by
the condition's name), so every cell whose model stage has the same settings (``finetune`` with
context ``none``, ``retrieval`` or ``in_context``) trains once and reuses the checkpoint.
:func:`train_on_texts` is that cached run, shared with ``augmented_finetune`` (original + generated
texts), ``finetune_all`` and ``rl``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from pydantic import Field, model_serializer

from genmodes.conditions.base import Built, CellContext, ModelStageInfo, Settings as _Base, StageCheck, StageCost, Timer
from genmodes.data.types import Dataset, Document
from genmodes.errors import ConfigError
from genmodes.training.finetune import DONE_MARKER, FinetuneSettings, load_checkpoint, texts_hash
from genmodes.training.thoughts import DrillFormat


class Settings(_Base, FinetuneSettings):
    """The fine-tuning run's settings (:class:`genmodes.training.finetune.FinetuneSettings`) and the
    documents it trains on."""

    kinds: list[str] | None = Field(default=None, min_length=1, description="document kinds to train on (default all)")
    recall_drills: DrillFormat = Field(default="none", description="also train on a recall drill per subject of "
                                       "the documents' facts, X's trained facts in the documents' wording: recall "
                                       "(after \"Recall what you know about X:\") or answer (as a thought before one of "
                                       "them is asked), rehearse (the answer drill under a cue of its own, \"Facts:\", "
                                       "so the thinking prompt's form is taught by chain drills alone), or two_topics "
                                       "(an answer drill whose thought goes on to a second subject drawn at random): the format warm start of thinking, which says "
                                       "no fact a question needs")
    chain_drills: list[str] | None = Field(default=None, min_length=1, description="datasets whose drills are "
                                           "worked examples of recalling, then inferring (finetune_all and rl): the "
                                           "thought states X's facts, those of the subject they name (its category), "
                                           "and on up, and the fact asked is one they imply; a practice dataset, "
                                           "scored on its recall splits only (its inferences are then trained)")
    recall_drills_on_chain: bool = Field(default=False, description="the datasets of chain_drills get the "
                                         "recall_drills drills too, so their subjects' own facts (what their recall "
                                         "splits ask) are rehearsed beside the chains")

    @model_serializer(mode="wrap")
    def _without_unset_drills(self, handler: Any) -> Any:
        # off, the dump (checkpoint and cell keys) is what it was before the setting existed
        return without_unset_drills(handler(self))

    def drill_format(self, dataset: str | None) -> DrillFormat:
        """The drills of ``dataset`` (its config name): chain where ``chain_drills`` lists it, else
        ``recall_drills``."""
        return "chain" if dataset is not None and dataset in (self.chain_drills or []) else self.recall_drills

    def drill_formats(self, dataset: str | None) -> list[DrillFormat]:
        """Every drill format ``dataset`` trains on: its :meth:`drill_format`, and with
        ``recall_drills_on_chain`` a chain-drilled dataset's ``recall_drills`` as well."""
        form = self.drill_format(dataset)
        more = form == "chain" and self.recall_drills_on_chain and self.recall_drills != "none"
        return [f for f in [form] + ([self.recall_drills] if more else []) if f != "none"]

    def warm_start(self) -> DrillFormat | bool:
        """What a dry run takes the format of a generated thought to be: chain drills (on a practice
        dataset) teach chain thoughts everywhere; else the recall drills' format; False without drills
        or with rehearsals only (their cue is not the thinking prompt)."""
        if self.chain_drills:
            return "chain"
        return self.recall_drills if self.recall_drills not in ("none", "rehearse") else False


def without_unset_drills(out: Any) -> Any:
    """A settings dump with the drill settings left out where they are off, so the dump (checkpoint and
    cell keys) is what it was before they existed, and the same for every stage that names the
    study's fine-tune."""
    if isinstance(out, dict):
        if out.get("recall_drills") in (None, "none"):
            out.pop("recall_drills", None)
        if not out.get("chain_drills"):
            out.pop("chain_drills", None)
        if not out.get("recall_drills_on_chain"):
            out.pop("recall_drills_on_chain", None)
    return out


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(ModelStageInfo):
    """A fine-tuning run (:func:`genmodes.training.finetune.train`), trained here or reused. With the
    stopping rule (``until_recall``), the epochs it took are a result: ``epochs_trained`` of at most
    ``max_epochs``, the recall after each epoch in ``recall_curve``."""

    method: str | None = None
    steps: int | None = None
    tokens_seen: int | None = None  # real tokens of the packed rows (tokens_trained: those with a loss)
    packed_rows: int | None = None
    examples: int | None = None
    texts: int | None = None
    epochs: float | None = None
    lr: float | None = None
    warmup_steps: int | None = None
    tokens_per_second: float | None = None
    attention: str | None = None
    load_seconds: float | None = None  # reused: loading the checkpoint
    training_documents: int | None = None
    until_recall: float | None = None
    max_epochs: int | None = None
    epochs_trained: int | None = None  # whole epochs when the stopping rule ended the run
    recall_reached: bool | None = None
    recall_curve: list[tuple[int, float]] | None = None  # (epoch, recall accuracy)
    recall_by_dataset: dict[str, float] | None = None  # at the end, per dataset (finetune_all: every one)
    recall_by_dataset_curve: list[tuple[int, dict[str, float]]] | None = None  # (epoch, per dataset), 2+ datasets
    recall_seconds: float | None = None  # the stopping rule's scoring (counted in train_seconds)

    @classmethod
    def of_run(cls, info: dict[str, Any], **more: Any) -> "Info":
        """From :func:`genmodes.training.finetune.train`'s info (as saved beside a checkpoint): keys an
        older checkpoint wrote and this version does not know are left out."""
        return cls.read(info).model_copy(update=more)


def validate(settings: Settings, check: StageCheck) -> None:
    """Document kinds every dataset has, a ``seq_len`` within the model's window, and LoRA target
    modules the model has."""
    check_kinds(settings, check)
    check_chain_drills(settings, check)
    check.check_window("seq_len", settings.seq_len)
    if settings.method == "lora" and settings.target_modules:
        for spec in check.model_specs:
            check_target_modules(check.load_model(spec), settings.target_modules,
                                 check.where + (f" on {spec}" if len(check.model_specs) > 1 else ""))


def check_chain_drills(settings: Settings, check: StageCheck, study: bool = False) -> None:
    """Chain drills train a dataset's inferences (X with what X's category has), so a dataset they
    drill is scored on its recall splits only; only a study-wide fine-tune (``study``) trains on
    datasets by name."""
    if settings.recall_drills_on_chain and not (settings.chain_drills and settings.recall_drills != "none"):
        raise ConfigError(f"{check.where}: recall_drills_on_chain needs chain_drills and recall_drills")
    if not settings.chain_drills:
        return
    if not study:
        raise ConfigError(f"{check.where}: chain_drills: only a study-wide fine-tune (finetune_all, rl) trains "
                          "on datasets by name")
    for name in settings.chain_drills:
        ds = check.datasets.get(name)
        if ds is None:
            continue  # not scored by this condition
        recall = set(ds.meta.get("recall_splits") or [])
        latent = sorted({q.split for q in ds.questions} - recall)
        if latent:
            raise ConfigError(f"{check.where}: chain_drills: dataset {name!r} is scored on {', '.join(latent)}, "
                              f"which its chain drills train; score it on its recall splits only "
                              f"(splits: {sorted(recall) or 'none'})")


def check_kinds(settings: Settings, check: StageCheck) -> None:
    if settings.kinds is None:
        return
    for name, ds in check.datasets.items():
        have = {doc.kind for doc in ds.documents}
        if not have & set(settings.kinds):
            raise ConfigError(f"{check.where}: kinds {settings.kinds}: dataset {name!r} has no documents "
                              f"of these kinds (it has {', '.join(sorted(have)) or 'none'})")


def check_target_modules(model: Any, wanted: list[str], where: str) -> None:
    names = [n for n, _ in model.named_modules()]
    for t in wanted:
        if not any(n == t or n.endswith("." + t) for n in names):
            leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                             if n and not list(m.children())})
            raise ConfigError(f"{where}: target_modules: the model has no module {t!r} "
                              f"(its layers: {', '.join(leaves[:12])})")


def estimate(settings: Settings, cost: Any) -> StageCost:
    docs = [d.text for d in cost.dataset.documents if settings.kinds is None or d.kind in settings.kinds]
    return cost.finetune("finetune", settings, docs)


def checkpoint_dir(ctx: CellContext, settings: FinetuneSettings, texts: Sequence[str], tag: str = "finetune",
                   recall: Any = None) -> Path:
    """The run-wide folder of a fine-tuning run: keyed by its settings and texts, and under the stopping
    rule by the recall questions it stops on (``recall``, a RecallProbe), which decide where it stops."""
    key: dict[str, Any] = {"settings": settings.key(), "texts": texts_hash(texts)}
    if settings.until_recall is not None:
        key["recall"] = recall.key() if recall is not None else None
    return ctx.artifact_dir(tag, **key)


def load_finished(ctx: CellContext, settings: FinetuneSettings, path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A finished checkpoint of ``ctx``'s model fine-tuned with ``settings`` (LoRA: onto ``ctx``'s model)."""
    return load_checkpoint(path, settings.method, ctx.device, ctx.load_model)


def train_on_texts(ctx: CellContext, settings: FinetuneSettings, texts: list[str],
                   tag: str = "finetune", recall: Any = None) -> tuple[Any, Any, Info]:
    """Fine-tune ``ctx``'s model on ``texts``, or reuse the finished checkpoint of an identical run
    (same model, dataset, seed, settings and texts; under the stopping rule, the same recall
    questions). ``recall``: the RecallProbe the stopping rule scores (default: this cell's dataset's
    recall splits). Returns (model, tokenizer, info); a LoRA model is returned as a peft
    ``PeftModel`` with its adapter unmerged."""
    from genmodes.io import wait_lock

    if settings.until_recall is not None and recall is None:
        recall = ctx.recall_probe()
    path = checkpoint_dir(ctx, settings, texts, tag, recall)
    # Cells sharing this checkpoint may run at once (the Ray executor): the first trains it, the
    # others wait here and then load it, instead of training it again.
    with wait_lock(path.with_name(path.name + ".lock")):
        return _train_or_load(ctx, settings, texts, tag, path, recall)


def _train_or_load(ctx: CellContext, settings: FinetuneSettings, texts: list[str], tag: str,
                   path: Path, recall: Any) -> tuple[Any, Any, Info]:
    from genmodes.training.finetune import save_checkpoint, train

    if (path / DONE_MARKER).exists():
        with Timer() as t:
            model, tok, info = load_finished(ctx, settings, path)
        return model, tok, Info.of_run(info, reused=True, load_seconds=round(t.seconds, 3), checkpoint=str(path))
    model, tok = ctx.load_model()
    model, info = train(model, tok, texts, settings, ctx.seed, progress=ctx.progress, desc=tag, log_dir=ctx.workdir,
                        recall=recall if settings.until_recall is not None else None)
    info.update(_gate_of_run(recall, info))
    save_checkpoint(model, tok, info, path)
    return model, tok, Info(**info, checkpoint=str(path))


def _gate_of_run(recall: Any, info: dict[str, Any]) -> dict[str, Any]:
    """A stopping rule over one dataset scored that dataset's recall on the final model: the gate's
    figure (the core then does not score it again)."""
    by = info.get("recall_by_dataset") or {}
    if recall is None or len(by) != 1 or not info.get("recall_curve"):
        return {}
    return {"recall_splits": recall.splits, "recall_accuracy": info["recall_curve"][-1][1],
            "recall_questions": len(recall.questions)}


def training_documents(ctx: CellContext, settings: Settings) -> list[Document]:
    docs = [d for d in ctx.dataset.documents if settings.kinds is None or d.kind in settings.kinds]
    if not docs:
        kinds = sorted({d.kind for d in ctx.dataset.documents})
        raise ConfigError(f"bad setting 'kinds': no training documents of kinds {settings.kinds} "
                          f"(the dataset has {', '.join(kinds) or 'none'})")
    return docs + drills(ctx.dataset, settings, docs)


def drills(ds: Dataset, settings: Settings, docs: list[Document] | None = None,
           name: str | None = None) -> list[Document]:
    """The recall drills of the documents ``settings`` trains on (none unless ``recall_drills``, or
    ``chain_drills`` lists ``name``, the dataset's config name; with ``recall_drills_on_chain`` a
    chain-drilled dataset has both kinds, the second's ids prefixed with its format)."""
    forms = settings.drill_formats(name)
    if not forms:
        return []
    from genmodes.training.thoughts import recall_drills

    if docs is None:
        docs = [d for d in ds.documents if settings.kinds is None or d.kind in settings.kinds]
    sub = Dataset(family=ds.family, config=ds.config, seed=ds.seed, documents=docs, questions=[],
                  knowledge=ds.knowledge, meta=ds.meta)
    out = recall_drills(sub, form=forms[0], seed=ds.seed)
    for form in forms[1:]:
        out += [dataclasses.replace(d, id=f"{form}-{d.id}") for d in recall_drills(sub, form=form, seed=ds.seed)]
    return out


def build(ctx: CellContext, settings: Settings) -> Built:
    docs = training_documents(ctx, settings)
    model, tok, info = train_on_texts(ctx, settings, [d.text for d in docs])
    return Built(model, tok, info=info.model_copy(update={"training_documents": len(docs)}))


# ------------------------------------------------------------------------------------------ report

def report_sections(view: Any) -> list[tuple]:
    """Training to the gate: the epochs each stopping-rule run took, and its recall after each epoch."""
    return stopping_rule_section(view)


def stopping_rule_run(info: Info) -> Info | None:
    """The stopping-rule fine-tune a cell's Info records (None: trained without the rule)."""
    return info if info.until_recall is not None else None


def _stopping_rule_runs(run: Any) -> list[tuple[tuple[str, str], Any, Info]]:
    """Every (stage, cell, run) of the whole run where a stage's ``stopping_rule_run`` hook finds a
    stopping-rule fine-tune, stages in registry order (model stages, then context stages)."""
    from genmodes.conditions import CONTEXT_STAGES, MODEL_STAGES, context_stage, model_stage

    order = [("model", k) for k in MODEL_STAGES] + [("context", k) for k in CONTEXT_STAGES]
    out = []
    for c in run.cells:
        stages = run.stages_of(c)
        for role, module_of in (("model", model_stage), ("context", context_stage)):
            kind = getattr(stages, role)
            hook = getattr(module_of(kind), "stopping_rule_run", None) if kind else None
            ft = hook(run.infos(c)[role]) if hook is not None and run.infos(c).get(role) is not None else None
            if ft is not None:
                out.append(((role, kind), c, ft))
    return sorted(out, key=lambda x: order.index(x[0]) if x[0] in order else len(order))


def stopping_rule_section(view: Any) -> list[tuple]:
    """Training to the gate, once for the whole run (shown by the first stage, in registry order, whose
    cells hold a stopping-rule run): a row per run, naming the datasets and conditions whose models
    hold it (one study-wide knowledge fine-tune serves every dataset and the RL built on it). A run is
    known by its seed and what it recorded (its recall after each epoch and the seconds those checks
    took), which every cell reusing its checkpoint, or continuing from it, carries."""
    runs = _stopping_rule_runs(view.run)
    if not runs or runs[0][0] != (view.role, view.kind):
        return []
    rows: dict[tuple, dict[str, Any]] = {}
    for _, cell, ft in runs:
        key = (cell.seed, ft.until_recall, ft.max_epochs, json.dumps(ft.recall_curve), ft.recall_seconds)
        row = rows.setdefault(key, {"run": ft, "seed": cell.seed, "datasets": [], "conditions": []})
        for part, name in (("datasets", cell.dataset), ("conditions", cell.condition)):
            if name not in row[part]:
                row[part].append(name)
    body = []
    for r in rows.values():
        ft = r["run"]
        curve = ", ".join(f"{e}: {view.pct_trim(a)}" for e, a in ft.recall_curve or [])
        datasets = [d for d in view.dataset_order if d in r["datasets"]]
        conditions = [c for c in view.condition_order if c in r["conditions"]]
        body.append([", ".join(datasets), ", ".join(conditions), str(r["seed"]), view.pct_trim(ft.until_recall),
                     f"{ft.epochs_trained} of {ft.max_epochs}", "yes" if ft.recall_reached else "no",
                     view.num(ft.train_seconds), curve or view.DASH])
    per_dataset = _per_dataset_curves(view, rows.values())
    return [("h", 2, "Training to the gate"),
            ("p", "Fine-tuning with a stopping rule (`until_recall`): the recall split(s) are scored with no "
                  "context at the end of every epoch, and training stops at the first epoch where recall "
                  "reaches the rule (every dataset's, for a study-wide fine-tune), or at `max_epochs` (the "
                  "learning-rate schedule spans `max_epochs`). The epochs it took are a result: how long the "
                  "facts needed. One row per fine-tuning run, with the datasets and conditions whose models "
                  "hold it (a model built on it, as RL or a continued fine-tune, counts its own training "
                  "elsewhere). Train-time seconds are the run's own and include the recall checks."),
            ("table", ["datasets", "conditions", "seed", "until recall", "epochs", "reached",
                       "train-time s", "recall after each epoch"], body), *per_dataset]


def _per_dataset_curves(view: Any, runs: Iterable[dict[str, Any]]) -> list[tuple]:
    """A study-wide fine-tune waits for its weakest dataset: each dataset's recall after each epoch
    (runs that recorded it), and the epoch where it first reached the rule."""
    body = []
    for r in runs:
        ft = r["run"]
        for name in sorted({n for _, by in ft.recall_by_dataset_curve or [] for n in by},
                           key=lambda n: (view.dataset_order.index(n) if n in view.dataset_order else 99, n)):
            points = [(e, by[name]) for e, by in ft.recall_by_dataset_curve or [] if name in by]
            first = next((e for e, a in points if a >= float(ft.until_recall)), None)
            body.append([name, str(r["seed"]), ", ".join(f"{e}: {view.pct_trim(a)}" for e, a in points),
                         str(first) if first is not None else f"not in {ft.epochs_trained}"])
    if not body:
        return []
    return [("p", "Each dataset's recall after each epoch (training stops once every one is at the rule):"),
            ("table", ["dataset", "seed", "recall after each epoch", "first epoch at the rule"], body)]
