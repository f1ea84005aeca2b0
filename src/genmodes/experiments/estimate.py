"""``genmodes run CONFIG --dry-run``: a cost estimate per cell, calibrated on the configured model and
device (issue 13, item 4).

Calibration loads the run's model on the run's device and precision and times what the cells do, at
the config's sizes: loading the model; scoring real questions of each dataset (with the config's
``scoring.batch_tokens``); the same questions after a shared document prefix (what in-context cells
pay per prefix token); a few optimizer steps at each fine-tuning setting's batch size, sequence length
and method; and, where a condition generates augmentations, a batch of greedy decoding steps. Each
cell's estimate then counts its tokens with the model's tokenizer (questions, choices, documents in
context, training documents) and multiplies by those rates. A checkpoint several cells share is
counted once, in the first cell that trains it (as the runner builds it once).

The thinking and RL stages of P3 (issue 11) are counted too: ``finetune_all`` (and the fine-tune an
``rl`` stage starts from) trains once for the whole study on every dataset's documents; an ``rl``
model is trained once per seed, its GRPO steps timed as the stage runs them (TRL's trainer on the
configured model: two steps minus one, on questions of its RL dataset); a ``thinking`` context
generates one thought per question (decoding timed at its batch size) before scoring.

Rough by design (it ignores, e.g., retrieval's embedding time and verification's extra scoring), but
measured on this machine, not assumed: a tiny-random grid is estimated in seconds, SmolLM2 on two CPU
cores in hours. A from-scratch model (``model: scratch``) is built as its cells would build it (the
dataset's tokenizer, the configured size) and timed the same way.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

K_QUESTIONS = 16  # questions per dataset scored to calibrate (after a warm-up of 2)
PREFIX_TOKENS = 512  # the shared-prefix length timed, extrapolated linearly to a cell's prefix
GEN_STEPS = 8  # decoding steps timed for augmentation


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
    """Measured rates on this device (seconds)."""

    device: str
    load_s: float = 0.0
    score_s_per_token: dict[str, float] = field(default_factory=dict)  # per dataset
    prefix_s_per_token: float = 0.0  # encoding a shared prefix
    prefix_s_per_q_token: float = 0.0  # extra per question per prefix token
    step_s: dict[str, float] = field(default_factory=dict)  # per fine-tuning shape
    gen_step_s: dict[int, float] = field(default_factory=dict)  # per generation batch size
    window: int = 2048
    tokenizer: Any = None
    tokenizers: dict[str, Any] = field(default_factory=dict)  # per dataset (from-scratch models)

    def describe(self) -> str:
        rates = ", ".join(f"{1 / v:,.0f} tok/s scoring {k}" for k, v in self.score_s_per_token.items() if v > 0)
        steps = ", ".join(f"{v:.2f} s/step {k.split(' {')[0]}" for k, v in self.step_s.items())
        return (f"calibrated on {self.device}: model load {self.load_s:.1f} s; {rates}"
                + (f"; prefix {1 / self.prefix_s_per_token:,.0f} tok/s" if self.prefix_s_per_token > 0 else "")
                + (f"; training {steps}" if steps else "")
                + "".join(f"; generation {v:.3f} s/token at batch {b}" for b, v in self.gen_step_s.items()))


def _ft_shape(ft: Any) -> str:
    return f"{ft.method} {ft.batch_size}x{ft.seq_len}" + (f" micro {ft.micro_batch_size}" if ft.micro_batch_size else "")


STUDY_WIDE = ("finetune_all", "rl")  # model stages trained on every dataset of the study at once


def _finetunes(r: Any) -> list[tuple[str, Any]]:
    """(checkpoint tag, fine-tuning settings) a resolved condition's model stage trains."""
    if r.model == "finetune":
        return [("finetune", r.model_settings)]
    if r.model == "augmented_finetune":
        return [("augmented_finetune", r.model_settings.finetune_settings())]
    if r.model == "finetune_all":
        return [("finetune_all", r.model_settings)]
    if r.model == "rl":  # GRPO starts from the study's knowledge fine-tune
        return [("finetune_all", r.model_settings.finetune)]
    return []


def _rl_key(rl: Any) -> str:
    """The GRPO step's shape: what its time depends on."""
    return f"grpo {rl.prompts_per_step}x{rl.group_size}x{rl.max_thought_tokens}"


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def calibrate(runner: Any, say: Any = None) -> Calibration | None:
    """Time the configured model on the configured device; None for a from-scratch model. ``say``:
    called with each stage's name (a calibration at published sizes takes minutes on a CPU)."""
    import torch

    from genmodes.conditions.base import render_documents
    from genmodes.conditions.in_context import model_context_length
    from genmodes.models import load_model, precision, resolve_dtype
    from genmodes.scoring import Scorer

    cfg = runner.cfg
    say = say or (lambda msg: None)
    if cfg.model_specs == ["scratch"]:
        return _calibrate_scratch(runner, say)
    device = runner.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(runner.dtype, runner.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cal = Calibration(device=f"{device} ({dtype}, {torch.get_num_threads()} threads)" if device == "cpu"
                      else f"{torch.cuda.get_device_name(0) if device.startswith('cuda') else device} ({dtype})")
    with precision(dtype, runner.device):
        t0 = time.perf_counter()
        # several models (`models:`): timed on the first; the others' cells take its timings (said below)
        model, tok = load_model(cfg.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
        cal.load_s = time.perf_counter() - t0
        cal.tokenizer = tok
        cal.window = model_context_length(model)
        scorer = Scorer(model, tok, batch_tokens=cfg.scoring.batch_tokens)
        first_docs = None
        for spec in cfg.datasets:
            say(f"scoring {spec.name} questions")
            ds = runner.dataset(spec)
            qs = ds.questions[: K_QUESTIONS + 2]
            scorer.score([(q.context, q.choices) for q in qs[:2]])  # warm-up: first-call allocations
            qs = qs[2:] or qs
            reqs = [(q.context, q.choices) for q in qs]
            t = _timed(lambda: scorer.score(reqs))
            cal.score_s_per_token[spec.name] = t / max(1, sum(_q_tokens(tok, q) for q in qs))
            if first_docs is None and ds.documents:
                first_docs, first_reqs, first_t, first_n = ds.documents, reqs, t, len(qs)
        if first_docs is not None:
            say(f"a {PREFIX_TOKENS}-token document prefix")
            text = render_documents(first_docs * (1 + PREFIX_TOKENS // max(1, len(first_docs))))
            ids = tok(text, add_special_tokens=False).input_ids[:PREFIX_TOKENS]
            prefix = tok.decode(ids)
            p = scorer.prefix_tokens(prefix)
            x = torch.tensor([ids], device=model.device)
            with torch.no_grad():
                model(x)  # warm-up at this length
                t_enc = _timed(lambda: model(x))
            t_with = _timed(lambda: scorer.score(first_reqs, prefix=prefix))
            cal.prefix_s_per_token = t_enc / max(1, len(ids))
            cal.prefix_s_per_q_token = max(0.0, t_with - first_t - t_enc) / max(1, first_n * p)
        shapes: dict[str, Any] = {}
        gens: set[int] = set()
        rls: dict[str, Any] = {}
        for c in cfg.conditions:
            r = c.resolve()
            for _, ft in _finetunes(r):
                shapes.setdefault(_ft_shape(ft), ft)
            if r.model == "augmented_finetune" and r.model_settings.source in ("local", "global"):
                gens.add(r.model_settings.generation_batch_size)
            if r.model == "rl":
                rls.setdefault(_rl_key(r.model_settings), r.model_settings)
            if r.context == "thinking":
                gens.add(r.context_settings.batch_size)
        texts = [d.text for spec in cfg.datasets for d in runner.dataset(spec).documents]
        for shape, ft in shapes.items():
            say(f"training steps ({shape})")
            cal.step_s[shape] = _step_seconds(runner, ft, texts)
        for key, rl in rls.items():
            say(f"GRPO steps ({rl.prompts_per_step} questions x {rl.group_size} thoughts of "
                f"{rl.max_thought_tokens} tokens)")
            cal.step_s[key] = _grpo_step_seconds(runner, rl)
        del model, scorer
        if gens:
            say(f"generation (batch {', '.join(map(str, sorted(gens)))})")
            cal.gen_step_s = _gen_seconds(runner, sorted(gens), texts)
    return cal


def _calibrate_scratch(runner: Any, say: Any) -> Calibration:
    """From-scratch cells: per dataset and training setting, the model the cell would build (its
    dataset's tokenizer, its size), timed for a few steps in a scratch folder, and its scoring rate."""
    import tempfile

    import torch

    from genmodes.conditions import from_scratch as fs
    from genmodes.training import scratch
    from genmodes.scoring import Scorer

    cfg = runner.cfg
    device = runner.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cal = Calibration(device=f"{device} ({torch.get_num_threads()} threads)" if device == "cpu" else device)
    for spec in cfg.datasets:
        ds = runner.dataset(spec)
        tok = scratch.build_tokenizer(fs.dataset_vocabulary(ds))
        cal.tokenizers[spec.name] = tok
        for c in cfg.conditions:
            r = c.resolve()
            if r.model != "scratch":
                continue
            st = r.model_settings
            key = _scratch_key(spec.name, st)
            if key in cal.step_s:
                continue
            say(f"from-scratch training steps ({spec.name}, {c.name})")
            texts = [d.text for d in fs.training_documents(ds, st.include_episodes)]
            times = []
            for n in (1, 2):
                model = scratch.build_model(st, tok, seed=0).to(device)
                quiet = st.model_copy(update={"steps": n, "warmup_steps": 0, "eval_every": 10 ** 9,
                                              "checkpoint_every": 10 ** 9, "curriculum_steps": 0})
                with tempfile.TemporaryDirectory() as tmp:
                    times.append(_timed(lambda: scratch.train(model, tok, texts, Path(tmp), quiet, seed=0,
                                                              progress=False)))
            cal.step_s[key] = times[1] - times[0] if times[1] > times[0] else times[1] / 2
            if spec.name not in cal.score_s_per_token:
                scorer = Scorer(model.eval(), tok, batch_tokens=cfg.scoring.batch_tokens)
                qs = ds.questions[: K_QUESTIONS]
                reqs = [(q.context, q.choices) for q in qs]
                scorer.score(reqs[:2])
                t = _timed(lambda: scorer.score(reqs))
                cal.score_s_per_token[spec.name] = t / max(1, sum(_q_tokens(tok, q) for q in qs))
    return cal


def _scratch_key(dataset: str, st: Any) -> str:
    return f"scratch {dataset} " + json.dumps(st.training_key(), sort_keys=True, default=str)


def _q_tokens(tok: Any, q: Any) -> int:
    return len(tok(q.context, add_special_tokens=False).input_ids) + sum(
        len(tok(c, add_special_tokens=False).input_ids) for c in q.choices)


def _marginal_step(runner: Any, train_steps: Any) -> float:
    """One step's seconds: ``train_steps(model, tok, n)`` timed for 2 steps minus for 1 step, each on a
    fresh copy of the configured model, so set-up (optimizer, packing, the trainer) is not counted as
    training (on a loaded machine the difference can come out below zero: then half the 2-step time)."""
    from genmodes.models import load_model

    times = []
    for n in (1, 2):
        model, tok = load_model(runner.cfg.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
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
        s = ft.model_copy(update={"steps": n, "epochs": None, "warmup_steps": 0, "report_to": []})
        train(model, tok, pool, s, 0, progress=False)

    return _marginal_step(runner, steps)


def _grpo_step_seconds(runner: Any, rl: Any) -> float:
    """One GRPO step of ``rl``'s shape, timed as the stage runs it (TRL's trainer: sampling the group's
    thoughts, the scorer's reward, the update), on questions of its RL dataset."""
    import tempfile

    from genmodes.training.grpo import grpo_train

    spec = next(d for d in runner.cfg.datasets if d.name == rl.rl_dataset[0])
    qs = list(runner.dataset(spec).questions[:2 * rl.prompts_per_step])

    def steps(model: Any, tok: Any, n: int) -> None:
        s = rl.model_copy(update={"steps": n, "save_every": 10 ** 6, "length_weight": 0.0, "format_weight": 0.0})
        with tempfile.TemporaryDirectory() as tmp:
            grpo_train(model, tok, qs, s, 0, Path(tmp), progress=False)

    return _marginal_step(runner, steps)


def _gen_seconds(runner: Any, batches: list[int], texts: list[str]) -> dict[int, float]:
    from genmodes.conditions.augment import LOCAL_PREFIX, LOCAL_PROMPT
    from genmodes.generate import PrefixGenerator
    from genmodes.models import load_model

    model, tok = load_model(runner.cfg.model_specs[0], device=runner.device, cache=runner.model_cache, seed=0)
    gen = PrefixGenerator(model, tok, LOCAL_PREFIX)
    out = {}
    for b in batches:
        prompts = [LOCAL_PROMPT.format(text=texts[i % len(texts)].strip()) for i in range(b)]
        gen.generate(prompts[:1], max_new_tokens=2)  # warm-up
        t1 = _timed(lambda: gen.generate(prompts, max_new_tokens=1))
        tn = _timed(lambda: gen.generate(prompts, max_new_tokens=GEN_STEPS + 1))
        out[b] = max(tn - t1, 0.0) / GEN_STEPS if tn > t1 else tn / (GEN_STEPS + 1)
    return out


def estimate(runner: Any, cal: Calibration | None, finished: bool = True) -> list[CellEstimate]:
    """Per cell of the grid, in run order. ``finished``: whether the run folder's finished cells are
    this config's (they are estimated but not counted as work left)."""
    from genmodes.conditions.base import render_documents
    from genmodes.experiments.runner import grid

    from genmodes.training.finetune import encode_examples, examples_from_texts, plan_rows

    per_ds: dict[str, dict[str, Any]] = {}
    trained: set[str] = set()
    out = []
    for cell in grid(runner.cfg):
        ds = runner.dataset(cell.dataset)
        r = cell.condition.resolve()
        s = r.model_settings
        est = CellEstimate(cell.id, len(ds.questions), finished and runner.done(cell))
        out.append(est)
        if r.model is None:  # a baseline
            continue
        tok = cal.tokenizers.get(cell.dataset.name) or cal.tokenizer if cal is not None else None
        if tok is None:
            est.train_s = est.test_s = None
            est.note = "not calibrated"
            continue

        def ntok(text: str) -> int:
            return len(tok(text, add_special_tokens=False).input_ids)

        if cell.dataset.name not in per_ds:
            docs = [ntok(d.text) + 1 for d in ds.documents]
            per_ds[cell.dataset.name] = {
                "q_tokens": sum(_q_tokens(tok, q) for q in ds.questions),
                "doc_tokens": sum(docs), "avg_doc": sum(docs) / max(1, len(docs)),
                "block": ntok(render_documents(ds.documents)) if ds.documents else 0}
        d = per_ds[cell.dataset.name]
        rate = cal.score_s_per_token[cell.dataset.name]
        test = cal.load_s + d["q_tokens"] * rate
        if r.context == "in_context":
            p = min(d["block"], cal.window)
            test += p * cal.prefix_s_per_token + len(ds.questions) * p * cal.prefix_s_per_q_token
        elif r.context == "retrieval":
            test += len(ds.questions) * (r.context_settings.k + 1) * d["avg_doc"] * rate
        if r.model == "scratch":
            est.train_s, est.test_s = _scratch_cell(cal, cell, ds, s, d, rate, trained), test
            if est.train_s == 0:
                est.note = "shares a model built by an earlier cell"
            continue
        if r.context == "thinking":  # a thought per question, then its tokens in every choice's context
            th = r.context_settings
            batches = math.ceil(len(ds.questions) / th.batch_size)
            test += batches * th.max_thought_tokens * cal.gen_step_s[th.batch_size]
            test += sum(len(q.choices) for q in ds.questions) * th.max_thought_tokens * rate
        train = 0.0
        for tag, ft in _finetunes(r):
            wide = r.model in STUDY_WIDE
            key = json.dumps([tag, cell.model, None if wide else cell.dataset.name, cell.seed,
                              ft.model_dump(mode="json"), getattr(s, "source", None)], sort_keys=True, default=str)
            if key in trained:
                est.note = "shares a checkpoint built by an earlier cell"
                continue
            trained.add(key)
            sources = [runner.dataset(spec) for spec in runner.cfg.datasets] if wide else [ds]
            docs = [x.text for src in sources for x in src.documents if ft.kinds is None or x.kind in ft.kinds]
            if r.model == "augmented_finetune":
                docs = docs * 2  # + about as many generated (or oracle) statements
            if ft.steps is None and ft.epochs is None:
                ft = ft.model_copy(update={"epochs": 10})  # finetune's default
            _, steps = plan_rows(encode_examples(tok, examples_from_texts(docs, ft.sentence_split)), ft)
            train += cal.load_s + steps * cal.step_s[_ft_shape(ft)]
        if r.model == "rl":
            key = json.dumps(["rl", cell.model, cell.seed, s.model_dump(mode="json")], sort_keys=True, default=str)
            if key in trained:
                est.note = "shares an RL model built by an earlier cell"
            else:
                trained.add(key)
                train += cal.load_s + s.steps * cal.step_s[_rl_key(s)]
                est.note = "GRPO" + (" (its fine-tuned start shared)" if est.note else "")
        if r.model == "augmented_finetune" and s.source in ("local", "global"):
            n_docs = len(ds.documents) * (s.augment_fraction or 1.0)
            batches = math.ceil(n_docs * s.samples_per_document / s.generation_batch_size)
            train += cal.load_s + batches * s.max_new_tokens * cal.gen_step_s[s.generation_batch_size]
            if s.source == "global":
                train += batches * min(d["block"], cal.window) * cal.prefix_s_per_token
        est.train_s, est.test_s = train, test
    return out


def _scratch_cell(cal: Calibration, cell: Any, ds: Any, st: Any, d: dict[str, Any], rate: float,
                  trained: set[str]) -> float:
    """Training of a from-scratch cell (0 when an earlier cell of the grid trains the same model):
    its steps, plus the learning-curve evaluations every ``eval_every`` steps."""
    key = _scratch_key(cell.dataset.name, st)
    if f"{key} {cell.seed}" in trained:
        return 0.0
    trained.add(f"{key} {cell.seed}")
    splits = {q.split for q in ds.questions}
    per_q = d["q_tokens"] / max(1, len(ds.questions)) * rate
    evals = st.steps // st.eval_every * min(st.eval_questions * len(splits), len(ds.questions)) * per_q
    return st.steps * cal.step_s[key] + evals


def print_estimate(runner: Any, out: Any, cal: Calibration | None, rows: list[CellEstimate]) -> None:
    cfg = runner.cfg
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
