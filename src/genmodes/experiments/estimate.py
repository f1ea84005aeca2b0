"""``genmodes run CONFIG --dry-run``: a cost estimate per cell, calibrated on the configured model and
device.

Scoring is costed as the scorer runs it: each cell's questions, in the context its context stage
gives them (a shared document prefix, retrieved documents per question), are laid out by the
scorer's own schedule (:meth:`genmodes.scoring.Scorer.plan`: the prefix encoded once in chunks,
questions packed into rows, rows batched) into the model calls it would make, and each call is
costed by :class:`ForwardCost`, timed on this machine at the scorer's shapes: a call's time grows
with the keys each new token reads, so one after a long shared prefix is timed at that prefix's
length when a cell first needs it (never extrapolated from a short one). Loading the model is timed
once. Then each of a cell's stages adds its own cost through its ``estimate`` hook
(:mod:`genmodes.conditions.base`), given this cell's :class:`CellCost`: fine-tuning steps at the
stage's batch size, sequence length and method (on the run's own texts), GRPO steps as the rl stage
runs them, a stage's own generation (thoughts) as a batch of its prompts at its batch size and token
budget, decoding steps at a generation batch size (augmentation), each timed on this machine the
first time a cell needs it. A checkpoint
several cells share is counted once, in the first cell that trains it (as the runner builds it
once). A stage without an ``estimate`` hook adds nothing beyond scoring.

A stopping rule (``until_recall``) is costed at its most (``max_epochs``, a recall check after each):
the epochs it takes are a result of the run, not known before. The table says "at most" and what
the cell costs if the rule stops at its first check (after one epoch); the total gives both.

Rough by design (it ignores, e.g., retrieval's embedding time and verification's extra scoring; the
rates are those of the moment on a shared machine), but measured on this machine, not assumed: a
tiny-random grid is estimated in seconds, SmolLM2 on two CPU cores in minutes. A stage that builds
its own model (``OWN_MODEL``: from scratch) builds it as its cells would and times it the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from genmodes.conditions import model_stage, own_model_specs
from genmodes.conditions.base import StageCost

GEN_STEPS = 8  # decoding steps timed for generation
CAL_TOKENS = 1024  # new tokens per timed scoring call without a cache (rows of the scorer's width)
HEAD_POSITIONS = 256  # LM-head positions timed
NEW_POINT = 1.25  # a call reading more keys than this times the longest timed is timed at its own length


@dataclass
class CellEstimate:
    cell: str
    questions: int
    finished: bool
    train_s: float | None = 0.0  # training + generation (None: not calibrated); a stopping rule at its most
    test_s: float | None = 0.0
    note: str = ""
    stoppable_s: float = 0.0  # of train_s, what stopping rules save if each stops at its first check

    @property
    def total_s(self) -> float | None:
        if self.train_s is None or self.test_s is None:
            return None
        return self.train_s + self.test_s

    @property
    def first_check_s(self) -> float | None:
        """The cell's estimate if every stopping rule in it stops at its first check."""
        return None if self.total_s is None else self.total_s - self.stoppable_s


class ForwardCost:
    """Seconds of the scorer's model calls (:class:`genmodes.scoring.Forward`) on this machine. A call
    of N new tokens, each reading K keys (the cache and its own row), with the LM head at H positions:

        overhead + N * per_token(K) + H * head

    ``per_token`` is timed at the keys of the scorer's rows without a cache (``row_tokens``) and of a
    packed row (``packed_tokens``), and piecewise linear between keys counts timed: attention reads
    every key, so it grows with K (a 512-token row after 8,000 cached tokens took 4x one without, on
    SmolLM2 on this CPU). A call reading more keys than ``NEW_POINT`` times the longest timed is timed
    at its own length when first costed, so a cell's long shared prefix is costed at its length,
    never extrapolated from a short one. Each timing is the mean of two runs."""

    def __init__(self, scorer: Any, device: str):
        self.scorer, self.device = scorer, device
        self.per_token_at: dict[int, float] = {}  # keys -> seconds per new token
        self.overhead = 0.0
        self.head = 0.0

    def calibrate(self) -> "ForwardCost":
        from genmodes.scoring import Forward

        small = self.scorer.forward_runner(Forward("packed", 1, 2, 0, 1))
        small()  # the process's first call pays one-time set-up
        self.overhead = self._time(small)
        self.head = self._time_head() / HEAD_POSITIONS
        for keys in sorted({self.scorer.row_tokens, self.scorer.packed_tokens}):
            self._point(keys)
        return self

    def _time(self, fn: Any) -> float:
        # the mean of two: on a shared machine the faster of two runs is what it does between its
        # neighbours' bursts, and a cell's run is not
        return (_timed(fn, self.device) + _timed(fn, self.device)) / 2

    def _time_head(self) -> float:
        import torch

        model = self.scorer.model
        head = model.get_output_embeddings()
        if head is None:
            return 0.0
        x = torch.randn(HEAD_POSITIONS, model.config.hidden_size, device=self.scorer.device, dtype=self.scorer.dtype)
        at = torch.arange(HEAD_POSITIONS, device=self.scorer.device)

        def positions() -> None:  # as the scorer takes each choice token's log-probability and argmax
            dists = torch.log_softmax(head(x).float(), dim=-1)[at]
            dists.gather(1, at[:, None] % dists.shape[1])
            dists.argmax(-1).tolist()

        with torch.no_grad():
            return self._time(positions)

    def _point(self, keys: int) -> None:
        """Seconds per new token at ``keys``: a call of the scorer's shape (rows of ``row_tokens`` without
        a cache, one packed row after a cache), less its overhead and head."""
        from genmodes.scoring import Forward

        width = min(keys, self.scorer.packed_tokens)
        past = keys - width
        rows = 1 if past else max(1, CAL_TOKENS // width)
        f = Forward("packed", rows, width, past, rows)
        t = self._time(self.scorer.forward_runner(f))
        self.per_token_at[keys] = max(0.0, t - self.overhead - f.head * self.head) / f.tokens

    def per_token(self, keys: int) -> float:
        pts = sorted(self.per_token_at.items())
        if keys <= pts[0][0] or len(pts) == 1:
            return pts[0][1] if keys <= pts[0][0] else pts[-1][1]
        for (k0, s0), (k1, s1) in zip(pts, pts[1:]):
            if keys <= k1:
                return s0 + (s1 - s0) * (keys - k0) / (k1 - k0)
        (k0, s0), (k1, s1) = pts[-2], pts[-1]  # at most NEW_POINT past the longest timed
        return max(s1, s1 + (s1 - s0) * (keys - k1) / (k1 - k0))

    def seconds(self, forwards: list[Any]) -> float:
        longest = max((f.keys for f in forwards), default=0)
        if longest > NEW_POINT * max(self.per_token_at):
            self._point(longest)
        return sum(self.overhead + f.tokens * self.per_token(f.keys) + f.head * self.head for f in forwards)

    def describe(self) -> str:
        pts = ", ".join(f"{1e3 * v:.1f} ms/token at {k:,} keys" for k, v in sorted(self.per_token_at.items()))
        return f"scoring {pts} (+{self.overhead:.2f} s a call, +{1e3 * self.head:.1f} ms a choice token)"


@dataclass
class Calibration:
    """Measured rates on this device (seconds); the training and generation rates, and scoring after
    long caches, are filled in by the estimate when a cell first needs them."""

    device: str
    load_s: float = 0.0
    forward: ForwardCost | None = None  # the configured model's scoring calls
    step_s: dict[str, float] = field(default_factory=dict)  # per training shape
    gen_step_s: dict[int, float] = field(default_factory=dict)  # per generation batch size
    window: int = 2048
    tokenizer: Any = None
    tokenizers: dict[str, Any] = field(default_factory=dict)  # per dataset (a stage's own model)
    forwards: dict[str, ForwardCost] = field(default_factory=dict)  # per dataset (a stage's own model)

    def describe(self) -> str:
        steps = ", ".join(f"{v:.2f} s/step {k.split(' {')[0]}" for k, v in self.step_s.items())
        return (f"calibrated on {self.device}: model load {self.load_s:.1f} s"
                + (f"; {self.forward.describe()}" if self.forward is not None else "")
                + (f"; training {steps}" if steps else "")
                + "".join(f"; generation {v:.3f} s/token at batch {b}" for b, v in sorted(self.gen_step_s.items())))


def _timed(fn: Any, device: str | None = None) -> float:
    sync = _synchronize(device)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _synchronize(device: str | None) -> Any:
    """A GPU runs asynchronously: a timing waits for its queued work."""
    if device and str(device).startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def _q_tokens(tok: Any, q: Any) -> int:
    return len(tok(q.context, add_special_tokens=False).input_ids) + sum(
        len(tok(c, add_special_tokens=False).input_ids) for c in q.choices)


# ------------------------------------------------------------------------------------------ calibration

def calibrate(runner: Any, say: Any = None) -> Calibration:
    """Time the configured model on the configured device: loading, and the scorer's model calls at
    its shapes. ``say``: called with each stage's name (a calibration at published sizes takes
    minutes on a CPU)."""
    import torch

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
        say("scoring calls")
        # kept: a cell with a long shared prefix has its calls timed at that length when first costed
        cal.forward = ForwardCost(Scorer(model, tok, batch_tokens=study.scoring.batch_tokens), device).calibrate()
    return cal


def _ft_shape(ft: Any) -> str:
    return f"{ft.method} {ft.batch_size}x{ft.seq_len}" + (f" micro {ft.micro_batch_size}" if ft.micro_batch_size else "")


# A fine-tuning step is timed as the marginal cost of this many steps: one step's difference moved a
# study's estimate from 0.91 to 1.63 of its run on this shared machine (docs/log/2026-12-07-semantic-structure-study.md)
FINETUNE_TIMED_STEPS = 4


def _marginal_step(runner: Any, train_steps: Any, more: int = 1) -> float:
    """One step's seconds: ``train_steps(model, tok, n)`` timed for 1 + ``more`` steps minus for 1 step,
    over ``more``, each on a fresh copy of the configured model, so set-up (optimizer, packing, the
    trainer) is not counted as training. The difference of two timings carries the noise of both on
    a shared machine; over ``more`` steps it is that much smaller a share of the step (on a loaded
    machine the difference can come out below zero: then the longer run's time per step)."""
    from genmodes.models import load_model

    times = []
    for n in (1, 1 + more):
        model, tok = load_model(runner.study.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
        times.append(_timed(lambda: train_steps(model, tok, n)))
        del model
    return (times[1] - times[0]) / more if times[1] > times[0] else times[1] / (1 + more)


def _step_seconds(runner: Any, ft: Any, texts: list[str], examples: list[tuple[str, str]] | None = None) -> float:
    """One optimizer step at ``ft``'s shape, on the run's own data: ``texts`` (loss on every token),
    or ``examples`` ((context, target) pairs, loss on the targets only: the LM head runs at the
    labelled positions alone, so such a step is cheaper)."""
    from genmodes.training.finetune import train

    def steps(model: Any, tok: Any, n: int) -> None:
        # enough data for n full steps, whatever the dataset's size
        need = n * ft.batch_size * ft.seq_len * 6
        s = ft.model_copy(update={"steps": n, "epochs": None, "warmup_steps": 0, "report_to": [], "until_recall": None,
                                  "max_epochs": None})
        if examples:
            pool = examples * (1 + need // max(1, sum(len(c) + len(t) for c, t in examples)))
            train(model, tok, [], s, 0, progress=False, examples=pool)
        else:
            pool = texts * (1 + need // max(1, sum(map(len, texts))))
            train(model, tok, pool, s, 0, progress=False)

    return _marginal_step(runner, steps, more=FINETUNE_TIMED_STEPS)


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

    def use_model(self, tokenizer: Any, model: Any) -> None:
        """A stage that builds its own model: the cell's tokens and scoring calls are that model's."""
        from genmodes.scoring import Scorer

        est = self._est
        est.cal.tokenizers[self.dataset_name] = tokenizer
        est.cal.forwards[self.dataset_name] = est.memo(("scoring calls", id(model)), lambda: ForwardCost(
            Scorer(model, tokenizer, batch_tokens=est.runner.study.scoring.batch_tokens), self.device).calibrate())

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
    def load_s(self) -> float:
        return self._est.cal.load_s

    @property
    def window(self) -> int:
        return self._est.cal.window

    # -- scoring, as the scorer runs it
    @property
    def _forward(self) -> ForwardCost:
        cal = self._est.cal
        fc = cal.forwards.get(self.dataset_name) or cal.forward
        assert fc is not None, "scoring costed before calibration"
        return fc

    def scoring(self, contexts: Sequence[str] | None = None, prefix: str = "",
                questions: Sequence[Any] | None = None) -> float:
        """Seconds the scorer takes on ``questions`` (default: the cell's), each after its entry of
        ``contexts`` (default: its own context) and the shared ``prefix``: the scorer's own plan of
        model calls (:meth:`genmodes.scoring.Scorer.plan`), each costed as timed on this machine, and
        the planning itself (encoding the questions and choices, as the scorer does first)."""
        qs = list(self.dataset.questions if questions is None else questions)
        ctxs = [q.context for q in qs] if contexts is None else list(contexts)
        fc = self._forward
        if self._est.runner.study.scoring.chat_template:
            from genmodes.chat import template_parts

            head, tail = template_parts(fc.scorer.tokenizer)
            prefix, ctxs = head + prefix, [c + tail for c in ctxs]
        t0 = time.perf_counter()
        plan = fc.scorer.plan([(c, q.choices) for c, q in zip(ctxs, qs)], prefix=prefix)
        # planning is the scorer's own work besides the model (it encodes every question and choice)
        return time.perf_counter() - t0 + fc.seconds(plan)

    @property
    def score_rate(self) -> float:
        """Seconds per token of this cell's questions scored alone (for work costed by its tokens)."""
        return self._est.memo(("score rate", self.dataset_name, id(self._forward)),
                              lambda: self.scoring() / max(1, self.question_tokens))

    def prefix_encoding(self, tokens: int) -> float:
        """Encoding a shared prefix of ``tokens`` once, in the scorer's chunks."""
        fc = self._forward
        return fc.seconds(fc.scorer.cache_forwards(0, int(tokens)))

    # -- rates timed when first needed
    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        return self._est.memo(key, make)

    def record_step(self, key: str, seconds: float) -> None:
        self._est.cal.step_s[key] = seconds

    def load_model(self) -> tuple[Any, Any]:
        """A fresh copy of the configured model (the first of ``models:``) on the run's device, for a
        stage that times its own work as it runs it."""
        from genmodes.models import load_model

        r = self._est.runner
        return load_model(r.study.model_specs[0], device=r.device, cache=r.model_cache, seed=0)

    def generation(self, batch_size: int, batches: int, new_tokens: int) -> float:
        """``batches`` generations of ``new_tokens`` tokens at ``batch_size`` (prompts of augmentation's
        shape)."""
        return batches * new_tokens * self._est.gen_step(batch_size)

    def generation_batch(self, prompts: Sequence[str], batch_size: int, new_tokens: int, temperature: float = 0.0,
                         prefix: str = "") -> float:
        """Seconds of one batch of a stage's own generation, timed on the configured model at its
        shape: ``batch_size`` of ``prompts`` (spread over them; all of them where fewer) after
        ``prefix``, greedy or sampled at ``temperature``, every row decoding ``new_tokens`` tokens. A
        batch decodes until its longest row ends, so it is timed at the budget (the configured model's
        own rows may stop sooner than the trained model's will). Timed once per shape."""
        n = min(batch_size, len(prompts))
        picks = tuple(prompts[i * len(prompts) // n] for i in range(n)) if prompts else ("",)
        key = ("generation batch", picks, new_tokens, temperature, prefix)
        return self.memo(key, lambda: self._time_generation_batch(list(picks), new_tokens, temperature, prefix))

    def _time_generation_batch(self, prompts: list[str], new_tokens: int, temperature: float, prefix: str) -> float:
        from genmodes.generate import PrefixGenerator

        self.say(f"generation: a batch of {len(prompts)} x {new_tokens} tokens "
                 f"({'sampled' if temperature > 0 else 'greedy'}{', after a prefix' if prefix else ''})")
        model, tok = self.memo(("model timed for generation",), self.load_model)
        gen = PrefixGenerator(model, tok, prefix=prefix)
        gen.generate(prompts[:1], max_new_tokens=2, temperature=temperature)  # warm-up (and the prefix's cache)
        seeds = list(range(len(prompts)))
        return _timed(lambda: gen.generate(prompts, max_new_tokens=new_tokens, temperature=temperature, seeds=seeds,
                                           to_budget=True), self.device)

    def stand_in(self, tokens: float) -> str:
        """A text of about ``tokens`` tokens of the cell's tokenizer: what a thought not yet written
        costs to score or train on."""
        tok = self.tokenizer
        n = max(0, round(tokens))
        word = tok(" the", add_special_tokens=False).input_ids  # one token or several (a byte-level vocabulary)
        return tok.decode((word * (n // max(1, len(word)) + 1))[:n]).strip()

    def grpo_step(self, rl: Any) -> float:
        return self._est.grpo_step(rl)

    def finetune_step(self, ft: Any, texts: list[str] | None = None,
                      examples: list[tuple[str, str]] | None = None) -> float:
        """One optimizer step of a fine-tune at ``ft``'s shape, timed on ``texts`` or on ``examples``
        (context, target) pairs (default: the study's documents)."""
        return self._est.finetune_step(ft, texts, examples)

    @property
    def model_settings(self) -> Any:
        """The cell's model stage settings (what its context stage runs on: e.g. whether the model was
        given a format warm start)."""
        return self._cell.condition.stages.model_settings

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
        ``extra_tokens``: training tokens of texts not known before the run (generated ones), per epoch.
        A stopping rule is costed at its most (``max_epochs``, a recall check after each); what it
        saves if it stops at its first check (after one epoch) is the cost's ``stoppable_s``."""
        import math

        from genmodes.training.finetune import encode_examples, examples_from_texts, plan_rows

        if not self.first([tag, ft.model_dump(mode="json"), shared_with], study_wide):
            return StageCost(note="shares a checkpoint built by an earlier cell")
        if ft.steps is None and ft.planned_epochs is None:
            ft = ft.model_copy(update={"epochs": 10})  # finetune's default
        encoded = encode_examples(self.tokenizer, examples_from_texts(texts, ft.sentence_split))
        _, steps = plan_rows(encoded, ft)
        tokens = sum(len(ids) for ids, _ in encoded) + extra_tokens
        if extra_tokens and ft.steps is None:
            steps = math.ceil(math.ceil(float(ft.planned_epochs) * tokens / ft.seq_len) / ft.batch_size)
        step_s = self._est.finetune_step(ft, texts)
        cost = StageCost(train_s=self.load_s + steps * step_s)
        if ft.until_recall is not None:
            # recall scored after every epoch, on every dataset the run learns
            datasets = self.datasets if study_wide else {self.dataset_name: self.dataset}
            check = self.recall_scoring(datasets)
            cost.train_s += ft.max_epochs * check
            first_epoch = min(steps, max(1, math.ceil(tokens / ft.seq_len / ft.batch_size)))
            cost.stoppable_s = (steps - first_epoch) * step_s + (ft.max_epochs - 1) * check
            cost.note = f"at most: {ft.max_epochs} epochs, stops once recall reaches {ft.until_recall:g}"
        return cost

    def recall_scoring(self, datasets: dict[str, Any]) -> float:
        """Scoring the recall splits of ``datasets`` once, with no context (one scorer, as the probe)."""
        from genmodes.training.recall import recall_questions

        qs = [q for ds in datasets.values() for q in recall_questions(ds)]
        return self.scoring(questions=qs) if qs else 0.0


class Estimator:
    """Per cell of the grid: scoring from the scorer's plan and the calibrated calls, the rest from the
    stages' hooks."""

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

    def finetune_step(self, ft: Any, texts: list[str] | None = None,
                      examples: list[tuple[str, str]] | None = None) -> float:
        # the step's cost is its shape's (rows are packed full) and, with examples, the share of
        # positions with a loss: timed once per both, on the first run's own data
        shape = _ft_shape(ft) + (" on prompted examples" if examples else "")
        if shape not in self.cal.step_s:
            self.say(f"training steps ({shape})")
            self.cal.step_s[shape] = _step_seconds(self.runner, ft, texts or self._texts(), examples)
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
        # the questions as the context stage places them (alone where it does not say)
        scoring = cc.score_s if cc.score_s is not None else cost.scoring()
        est.test_s = cost.load_s + scoring + mc.test_s + cc.test_s
        est.stoppable_s = mc.stoppable_s + cc.stoppable_s
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
        note = r.note + (f" (~{f(r.first_check_s)} s if it stops at its first check)" if r.stoppable_s > 0 else "")
        print(f"  {r.cell:<{w}}  {r.questions:>9}  {status:>8}  {f(r.train_s):>9}  {f(r.test_s):>8}  {note}".rstrip())
    print(total_line(rows))


def total_line(rows: list[CellEstimate]) -> str:
    """The cells left to run, one after another: at most (every stopping rule to its max_epochs) and,
    where a cell has a stopping rule, if every rule stops at its first check."""
    todo = [r for r in rows if not r.finished]
    known = [r for r in todo if r.total_s is not None]
    total = sum(r.total_s for r in known)
    longest = max((r.total_s for r in known), default=0.0)
    unknown = len(todo) - len(known)
    ruled = [r for r in known if r.stoppable_s > 0]
    line = f"to run: {len(todo)} of {len(rows)} cells; estimated total ~{_human(total)} one after another"
    if ruled:
        first = sum(r.first_check_s for r in known)
        line += (f" at most, ~{_human(first)} if every stopping rule ({len(ruled)} cell(s), costed at their most) "
                 f"stops at its first check; longest cell ~{_human(longest)} at most, the least a cluster can take")
    else:
        line += f" (longest cell ~{_human(longest)}, the least a cluster can take)"
    return line + (f"; {unknown} cell(s) not estimated" if unknown else "")


def _human(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
