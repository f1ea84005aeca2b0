"""``genmodes run CONFIG --dry-run``: a cost estimate per cell, calibrated on the configured model and
device.

Calibration loads the run's model on the run's device and precision and times what every cell does:
loading the model; scoring real questions of each dataset (with the config's ``scoring.batch_tokens``);
the same questions after a shared document prefix (what in-context cells pay per prefix token). Each
cell's estimate counts its tokens with the model's tokenizer and multiplies by those rates; then each
of its stages adds its own cost through its ``estimate`` hook (:mod:`genmodes.conditions.base`),
given this cell's :class:`CellCost`: fine-tuning steps at the stage's batch size, sequence length and
method, GRPO steps as the rl stage runs them, decoding steps at a generation batch size, each timed on
this machine the first time a cell needs it. A checkpoint several cells share is counted once, in the
first cell that trains it (as the runner builds it once). A stage without an ``estimate`` hook adds
nothing beyond scoring.

Rough by design (it ignores, e.g., retrieval's embedding time and verification's extra scoring), but
measured on this machine, not assumed: a tiny-random grid is estimated in seconds, SmolLM2 on two CPU
cores in hours. A stage that builds its own model (``OWN_MODEL``: from scratch) builds it as its
cells would and times it the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from genmodes.conditions import model_stage, own_model_specs
from genmodes.conditions.base import StageCost

K_QUESTIONS = 16  # questions per dataset scored to calibrate (after a warm-up of 2)
PREFIX_TOKENS = 512  # the shared-prefix length timed, extrapolated linearly to a cell's prefix
GEN_STEPS = 8  # decoding steps timed for generation


@dataclass
class CellEstimate:
    cell: str
    questions: int
    finished: bool
    train_s: float | None = 0.0  # training + generation (None: not calibrated)
    test_s: float | None = 0.0
    note: str = ""

    @property
    def total_s(self) -> float | None:
        if self.train_s is None or self.test_s is None:
            return None
        return self.train_s + self.test_s


@dataclass
class Calibration:
    """Measured rates on this device (seconds); the training and generation rates are filled in by
    the estimate, when a cell first needs them."""

    device: str
    load_s: float = 0.0
    score_s_per_token: dict[str, float] = field(default_factory=dict)  # per dataset
    prefix_s_per_token: float = 0.0  # encoding a shared prefix
    prefix_s_per_q_token: float = 0.0  # extra per question per prefix token
    step_s: dict[str, float] = field(default_factory=dict)  # per training shape
    gen_step_s: dict[int, float] = field(default_factory=dict)  # per generation batch size
    window: int = 2048
    tokenizer: Any = None
    tokenizers: dict[str, Any] = field(default_factory=dict)  # per dataset (a stage's own model)

    def describe(self) -> str:
        rates = ", ".join(f"{1 / v:,.0f} tok/s scoring {k}" for k, v in self.score_s_per_token.items() if v > 0)
        steps = ", ".join(f"{v:.2f} s/step {k.split(' {')[0]}" for k, v in self.step_s.items())
        return (f"calibrated on {self.device}: model load {self.load_s:.1f} s; {rates}"
                + (f"; prefix {1 / self.prefix_s_per_token:,.0f} tok/s" if self.prefix_s_per_token > 0 else "")
                + (f"; training {steps}" if steps else "")
                + "".join(f"; generation {v:.3f} s/token at batch {b}" for b, v in sorted(self.gen_step_s.items())))


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _q_tokens(tok: Any, q: Any) -> int:
    return len(tok(q.context, add_special_tokens=False).input_ids) + sum(
        len(tok(c, add_special_tokens=False).input_ids) for c in q.choices)


# ------------------------------------------------------------------------------------------ calibration

def calibrate(runner: Any, say: Any = None) -> Calibration:
    """Time the configured model on the configured device: loading, scoring, a shared prefix. ``say``:
    called with each stage's name (a calibration at published sizes takes minutes on a CPU)."""
    import torch

    from genmodes.conditions.base import render_documents
    from genmodes.conditions.in_context import model_context_length
    from genmodes.models import load_model, precision, resolve_dtype
    from genmodes.scoring import Scorer

    study = runner.study
    say = say or (lambda msg: None)
    device = runner.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if study.threads:
        torch.set_num_threads(study.threads)
    if set(study.model_specs) <= own_model_specs():  # its stage builds, times and scores it (estimate)
        return Calibration(device=f"{device} ({torch.get_num_threads()} threads)" if device == "cpu" else device)
    dtype = resolve_dtype(runner.dtype, runner.device)
    cal = Calibration(device=f"{device} ({dtype}, {torch.get_num_threads()} threads)" if device == "cpu"
                      else f"{torch.cuda.get_device_name(0) if device.startswith('cuda') else device} ({dtype})")
    with precision(dtype, runner.device):
        t0 = time.perf_counter()
        # several models (`models:`): timed on the first; the others' cells take its timings (said below)
        model, tok = load_model(study.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
        cal.load_s = time.perf_counter() - t0
        cal.tokenizer = tok
        cal.window = model_context_length(model)
        scorer = Scorer(model, tok, batch_tokens=study.scoring.batch_tokens)
        first = None
        for spec in study.datasets:
            say(f"scoring {spec.name} questions")
            ds = runner.dataset(spec)
            qs = ds.questions[: K_QUESTIONS + 2]
            scorer.score([(q.context, q.choices) for q in qs[:2]])  # warm-up: first-call allocations
            qs = qs[2:] or qs
            reqs = [(q.context, q.choices) for q in qs]
            t = _timed(lambda: scorer.score(reqs))
            cal.score_s_per_token[spec.name] = t / max(1, sum(_q_tokens(tok, q) for q in qs))
            if first is None and ds.documents:
                first = (ds.documents, reqs, t, len(qs))
        if first is not None:
            say(f"a {PREFIX_TOKENS}-token document prefix")
            docs, reqs, t_plain, n = first
            text = render_documents(docs * (1 + PREFIX_TOKENS // max(1, len(docs))))
            ids = tok(text, add_special_tokens=False).input_ids[:PREFIX_TOKENS]
            prefix = tok.decode(ids)
            p = scorer.prefix_tokens(prefix)
            x = torch.tensor([ids], device=model.device)
            with torch.no_grad():
                model(x)  # warm-up at this length
                t_enc = _timed(lambda: model(x))
            t_with = _timed(lambda: scorer.score(reqs, prefix=prefix))
            cal.prefix_s_per_token = t_enc / max(1, len(ids))
            cal.prefix_s_per_q_token = max(0.0, t_with - t_plain - t_enc) / max(1, n * p)
        del model, scorer
    return cal


def _ft_shape(ft: Any) -> str:
    return f"{ft.method} {ft.batch_size}x{ft.seq_len}" + (f" micro {ft.micro_batch_size}" if ft.micro_batch_size else "")


def _marginal_step(runner: Any, train_steps: Any) -> float:
    """One step's seconds: ``train_steps(model, tok, n)`` timed for 2 steps minus for 1 step, each on a
    fresh copy of the configured model, so set-up (optimizer, packing, the trainer) is not counted as
    training (on a loaded machine the difference can come out below zero: then half the 2-step time)."""
    from genmodes.models import load_model

    times = []
    for n in (1, 2):
        model, tok = load_model(runner.study.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
        times.append(_timed(lambda: train_steps(model, tok, n)))
        del model
    return times[1] - times[0] if times[1] > times[0] else times[1] / 2


def _step_seconds(runner: Any, ft: Any, texts: list[str]) -> float:
    """One optimizer step at ``ft``'s shape."""
    from genmodes.training.finetune import train

    def steps(model: Any, tok: Any, n: int) -> None:
        # enough text for n full steps, whatever the dataset's size
        need = n * ft.batch_size * ft.seq_len * 6
        pool = (texts * (1 + need // max(1, sum(map(len, texts)))))
        s = ft.model_copy(update={"steps": n, "epochs": None, "warmup_steps": 0, "report_to": [], "until_recall": None,
                                  "max_epochs": None})
        train(model, tok, pool, s, 0, progress=False)

    return _marginal_step(runner, steps)


def _grpo_step_seconds(runner: Any, rl: Any) -> float:
    """One GRPO step of ``rl``'s shape, timed as the stage runs it (TRL's trainer: sampling the group's
    thoughts, the scorer's reward, the update), on questions of its RL dataset."""
    import tempfile

    from genmodes.training.grpo import grpo_train

    qs = list(runner.datasets()[rl.rl_dataset[0]].questions[:2 * rl.prompts_per_step])

    def steps(model: Any, tok: Any, n: int) -> None:
        s = rl.model_copy(update={"steps": n, "save_every": 10 ** 6, "length_weight": 0.0, "format_weight": 0.0})
        with tempfile.TemporaryDirectory() as tmp:
            grpo_train(model, tok, qs, s, 0, Path(tmp), progress=False)

    return _marginal_step(runner, steps)


def _gen_seconds(runner: Any, batch: int, texts: list[str]) -> float:
    """Seconds per decoding step at a generation batch size (prompts of augmentation's shape)."""
    from genmodes.conditions.augment import LOCAL_PREFIX, LOCAL_PROMPT
    from genmodes.generate import PrefixGenerator
    from genmodes.models import load_model

    model, tok = load_model(runner.study.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
    gen = PrefixGenerator(model, tok, LOCAL_PREFIX)
    prompts = [LOCAL_PROMPT.format(text=texts[i % len(texts)].strip()) for i in range(batch)]
    gen.generate(prompts[:1], max_new_tokens=2)  # warm-up
    t1 = _timed(lambda: gen.generate(prompts, max_new_tokens=1))
    tn = _timed(lambda: gen.generate(prompts, max_new_tokens=GEN_STEPS + 1))
    return max(tn - t1, 0.0) / GEN_STEPS if tn > t1 else tn / (GEN_STEPS + 1)


# ------------------------------------------------------------------------------------------ a cell's cost

class CellCost:
    """The estimator's model of one cell, handed to its stages' ``estimate`` hooks: the cell's data and
    tokens, the calibrated rates (timed when first needed), and what earlier cells already built."""

    def __init__(self, est: "Estimator", cell: Any):
        self._est, self._cell = est, cell
        self.dataset_name = str(cell.dataset.name)
        self.dataset = est.runner.dataset(cell.dataset)
        self.datasets = est.runner.datasets()
        self.condition = cell.condition.name
        self.model, self.seed = cell.model, cell.seed
        self.device = est.device
        self.say = est.say
        self.timed = _timed

    # -- the cell's data, as the model it scores with tokenizes it
    @property
    def tokenizer(self) -> Any:
        cal = self._est.cal
        return cal.tokenizers.get(self.dataset_name) or cal.tokenizer

    def use_model(self, tokenizer: Any, score_rate: float) -> None:
        """A stage that builds its own model: the cell's tokens and scoring rate are that model's."""
        self._est.cal.tokenizers[self.dataset_name] = tokenizer
        self._est.cal.score_s_per_token[self.dataset_name] = score_rate

    def _stats(self) -> dict[str, Any]:
        return self._est.dataset_stats(self.dataset_name, self.dataset, self.tokenizer)

    @property
    def question_tokens(self) -> int:
        return self._stats()["q_tokens"]

    @property
    def block_tokens(self) -> int:
        """The dataset's documents rendered as one in-context block."""
        return self._stats()["block"]

    @property
    def mean_document_tokens(self) -> float:
        return self._stats()["avg_doc"]

    @property
    def score_rate(self) -> float:
        """Seconds per scored token on this cell's dataset."""
        return self._est.cal.score_s_per_token[self.dataset_name]

    @property
    def load_s(self) -> float:
        return self._est.cal.load_s

    @property
    def window(self) -> int:
        return self._est.cal.window

    def prefix_encoding(self, tokens: float) -> float:
        """Encoding a shared prefix of ``tokens`` once."""
        return tokens * self._est.cal.prefix_s_per_token

    def prefix_reading(self, tokens: float) -> float:
        """What one question pays for reading a shared prefix of ``tokens``."""
        return tokens * self._est.cal.prefix_s_per_q_token

    # -- rates timed when first needed
    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        return self._est.memo(key, make)

    def record_step(self, key: str, seconds: float) -> None:
        self._est.cal.step_s[key] = seconds

    def time_scoring(self, model: Any, tokenizer: Any, dataset: str) -> float:
        """Seconds per scored token of ``model`` on ``dataset``'s questions."""
        return self._est.time_scoring(model, tokenizer, self.datasets[dataset])

    def load_model(self) -> tuple[Any, Any]:
        """A fresh copy of the configured model (the first of ``models:``) on the run's device, for a
        stage that times its own work as it runs it."""
        from genmodes.models import load_model

        r = self._est.runner
        return load_model(r.study.model_specs[0], device=r.device, cache=r.model_cache, seed=0)

    def generation(self, batch_size: int, batches: int, new_tokens: int) -> float:
        """``batches`` generations of ``new_tokens`` tokens at ``batch_size``."""
        return batches * new_tokens * self._est.gen_step(batch_size)

    def grpo_step(self, rl: Any) -> float:
        return self._est.grpo_step(rl)

    def finetune_step(self, ft: Any) -> float:
        """One optimizer step of a fine-tune at ``ft``'s shape."""
        return self._est.finetune_step(ft)

    # -- shared artifacts
    def model_key(self) -> dict[str, Any]:
        """The cell's model stage and its settings: cells with the same key score the same model."""
        stages = self._cell.condition.stages
        return {"kind": stages.model, "settings": stages.model_settings.model_dump(mode="json")}

    def first(self, key: Any, study_wide: bool = False) -> bool:
        """True the first time a cell of the grid builds the artifact ``key`` (per model and seed, and per
        dataset unless ``study_wide``): later cells reuse it, at no train-time cost."""
        full = json.dumps([key, self.model, None if study_wide else self.dataset_name, self.seed],
                          sort_keys=True, default=str)
        if full in self._est.built:
            return False
        self._est.built.add(full)
        return True

    def finetune(self, tag: str, ft: Any, texts: list[str], study_wide: bool = False,
                 shared_with: Any = None, extra_tokens: int = 0) -> StageCost:
        """A fine-tuning run on ``texts`` (counted once per identical run, as its checkpoint is shared);
        ``extra_tokens``: training tokens of texts not known before the run (generated ones), per epoch."""
        import math

        from genmodes.training.finetune import encode_examples, examples_from_texts, plan_rows

        if not self.first([tag, ft.model_dump(mode="json"), shared_with], study_wide):
            return StageCost(note="shares a checkpoint built by an earlier cell")
        if ft.steps is None and ft.planned_epochs is None:
            ft = ft.model_copy(update={"epochs": 10})  # finetune's default
        encoded = encode_examples(self.tokenizer, examples_from_texts(texts, ft.sentence_split))
        _, steps = plan_rows(encoded, ft)
        if extra_tokens and ft.steps is None:
            tokens = sum(len(ids) for ids, _ in encoded) + extra_tokens
            steps = math.ceil(math.ceil(float(ft.planned_epochs) * tokens / ft.seq_len) / ft.batch_size)
        cost = StageCost(train_s=self.load_s + steps * self._est.finetune_step(ft))
        if ft.until_recall is not None:
            # the stopping rule: at most max_epochs, each followed by scoring the recall questions
            datasets = self.datasets if study_wide else {self.dataset_name: self.dataset}
            cost.train_s += ft.max_epochs * self.recall_scoring(datasets)
            cost.note = f"at most: stops once recall reaches {ft.until_recall:g}"
        return cost

    def recall_scoring(self, datasets: dict[str, Any]) -> float:
        """Scoring the recall splits of ``datasets`` once, with no context."""
        from genmodes.training.recall import recall_questions

        tok = self.tokenizer
        return sum(_q_tokens(tok, q) * self._est.cal.score_s_per_token.get(name, self.score_rate)
                   for name, ds in datasets.items() for q in recall_questions(ds))


class Estimator:
    """Per cell of the grid: scoring from the calibration, the rest from the stages' hooks."""

    def __init__(self, runner: Any, cal: Calibration, say: Any = None):
        import torch

        self.runner, self.cal = runner, cal
        self.say = say or (lambda msg: None)
        self.device = runner.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.built: set[str] = set()
        self._memo: dict[Any, Any] = {}
        self._stats: dict[str, dict[str, Any]] = {}

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def dataset_stats(self, name: str, ds: Any, tok: Any) -> dict[str, Any]:
        if name not in self._stats:
            from genmodes.conditions.base import render_documents

            def ntok(text: str) -> int:
                return len(tok(text, add_special_tokens=False).input_ids)

            docs = [ntok(d.text) + 1 for d in ds.documents]
            self._stats[name] = {"q_tokens": sum(_q_tokens(tok, q) for q in ds.questions),
                                 "avg_doc": sum(docs) / max(1, len(docs)),
                                 "block": ntok(render_documents(ds.documents)) if ds.documents else 0}
        return self._stats[name]

    def _texts(self) -> list[str]:
        return [d.text for ds in self.runner.datasets().values() for d in ds.documents]

    def finetune_step(self, ft: Any) -> float:
        shape = _ft_shape(ft)
        if shape not in self.cal.step_s:
            self.say(f"training steps ({shape})")
            self.cal.step_s[shape] = _step_seconds(self.runner, ft, self._texts())
        return self.cal.step_s[shape]

    def grpo_step(self, rl: Any) -> float:
        key = f"grpo {rl.prompts_per_step}x{rl.group_size}x{rl.max_thought_tokens}"
        if key not in self.cal.step_s:
            self.say(f"GRPO steps ({rl.prompts_per_step} questions x {rl.group_size} thoughts of "
                     f"{rl.max_thought_tokens} tokens)")
            self.cal.step_s[key] = _grpo_step_seconds(self.runner, rl)
        return self.cal.step_s[key]

    def gen_step(self, batch: int) -> float:
        if batch not in self.cal.gen_step_s:
            self.say(f"generation (batch {batch})")
            self.cal.gen_step_s[batch] = _gen_seconds(self.runner, batch, self._texts())
        return self.cal.gen_step_s[batch]

    def time_scoring(self, model: Any, tok: Any, ds: Any) -> float:
        from genmodes.scoring import Scorer

        scorer = Scorer(model, tok, batch_tokens=self.runner.study.scoring.batch_tokens)
        qs = ds.questions[: K_QUESTIONS]
        reqs = [(q.context, q.choices) for q in qs]
        scorer.score(reqs[:2])
        t = _timed(lambda: scorer.score(reqs))
        return t / max(1, sum(_q_tokens(tok, q) for q in qs))

    def cell(self, cell: Any, est: CellEstimate) -> None:
        stages = cell.condition.stages
        if stages.is_baseline:  # no model: nothing to time
            return
        cost = CellCost(self, cell)
        model_mod, context_mod = model_stage(stages.model), None
        mc = model_mod.estimate(stages.model_settings, cost) if hasattr(model_mod, "estimate") else StageCost()
        if cost.tokenizer is None:
            est.train_s = est.test_s = None
            est.note = "not calibrated"
            return
        from genmodes.conditions import context_stage

        context_mod = context_stage(stages.context)
        cc = context_mod.estimate(stages.context_settings, cost) if hasattr(context_mod, "estimate") else StageCost()
        est.train_s = mc.train_s + cc.train_s
        est.test_s = cost.load_s + cost.question_tokens * cost.score_rate + mc.test_s + cc.test_s
        est.note = mc.note or cc.note


def estimate(runner: Any, cal: Calibration | None, finished: bool = True, say: Any = None) -> list[CellEstimate]:
    """Per cell of the grid, in run order. ``finished``: whether the run folder's finished cells are
    this config's (they are estimated but not counted as work left)."""
    from genmodes.experiments.grid import grid
    from genmodes.models import precision, resolve_dtype

    out = [CellEstimate(cell.id, len(runner.dataset(cell.dataset).questions), finished and runner.done(cell))
           for cell in grid(runner.study)]
    if cal is None:
        for est, cell in zip(out, grid(runner.study)):
            if not cell.condition.is_baseline:
                est.train_s = est.test_s = None
                est.note = "not calibrated"
        return out
    estimator = Estimator(runner, cal, say)
    with precision(resolve_dtype(runner.dtype, runner.device), runner.device):
        for est, cell in zip(out, grid(runner.study)):
            estimator.cell(cell, est)
    return out


def print_estimate(runner: Any, out: Any, cal: Calibration | None, rows: list[CellEstimate]) -> None:
    cfg = runner.study
    print(f"{cfg.name}: model {', '.join(cfg.model_specs)}, {len(rows)} cells -> {out}")
    if cfg.several_models:
        print(f"  (timed on {cfg.model_specs[0]}; the other models' cells are estimated at its speed)")
    print(cal.describe() if cal is not None else "not calibrated")
    w = max(len(r.cell) for r in rows)
    print(f"  {'cell':<{w}}  {'questions':>9}  {'status':>8}  {'train ~s':>9}  {'test ~s':>8}  note")

    def f(x: float | None) -> str:
        return "?" if x is None else "0" if x == 0 else f"{x:.0f}" if x >= 1 else f"{x:.1f}"

    for r in rows:
        status = "finished" if r.finished else "to run"
        print(f"  {r.cell:<{w}}  {r.questions:>9}  {status:>8}  {f(r.train_s):>9}  {f(r.test_s):>8}  {r.note}".rstrip())
    todo = [r for r in rows if not r.finished]
    known = [r.total_s for r in todo if r.total_s is not None]
    total = sum(known)
    longest = max(known, default=0.0)
    unknown = len(todo) - len(known)
    print(f"to run: {len(todo)} of {len(rows)} cells; estimated total ~{_human(total)} one after another "
          f"(longest cell ~{_human(longest)}, the least a cluster can take)"
          + (f"; {unknown} cell(s) not estimated" if unknown else ""))


def _human(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
