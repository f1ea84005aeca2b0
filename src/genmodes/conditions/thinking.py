"""``thinking`` context stage: the model writes a thought before the choices are scored [P3].

P3 (arXiv 2604.01430) lets a model that learned knowledge in its parameters think before it answers,
so that it can bring that knowledge back into its context. Composed with any model stage: ``finetune
+ thinking`` is the prompted-thinking baseline, ``rl + thinking`` the RL-trained thinker. For each
question the model continues a prompt that asks it to recall what it knows (greedy or sampled, a
token budget, stopping at the first line break); the one scorer then scores the choices after
question + thought + answer cue (:mod:`genmodes.training.thoughts`). Each thought and its
implicit-retrieval audit go into that question's results row (its ``details``); the cell's info
has the test-time compute (tokens generated per question) and the retrieval rate.

``thought`` picks what goes into the thought slot, so that the controls P3's claim needs share the
prompt, the cue and the scorer with the thinker:

- ``generate``: the model's own thought;
- ``empty``: nothing (the same weights answering after the same prompt: did the thought help, or the
  weights?);
- ``shuffled``: the model's thought for another question of the same split (a thought of the right
  form that retrieves the wrong facts);
- ``oracle``: the question's gold premises in the documents' wording (what a perfect implicit
  retrieval would write: the oracle-thought gate);
- ``verify``: generate-and-verify [P3 on reversals]: for each option the model recalls what it knows
  about that option ("Recall what you know about <option>:"), and those recollections are the
  thought. **The options enter the context**, which P1's protocol forbids: the report flags it.

``demonstration: 2`` puts two recall drills (of another dataset of the study of the same family, when
there is one, so no demonstrated fact is one a question of this dataset needs) before every prompt: the
2-shot alternative to the recall drills of the knowledge fine-tune (``recall_drills``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from genmodes.conditions.base import CellContext, ContextStageInfo, Info as _Record, Prepared, Settings as _Base
from genmodes.conditions.base import StageCheck, StageCost, Timer
from genmodes.data.types import Dataset, Question
from genmodes.errors import ConfigError
from genmodes.training.thoughts import (DRILL, PROMPT_VERSION, RECALL_INSTRUCTION, RETRIEVAL_LABELS, THOUGHT_LEAD,
                                        Thought, answer_context, audit_thought, demonstration, expected_thought_tokens,
                                        generate_thoughts, oracle_thought, shuffled_order, think_prompt)

LABELS = ("stated", "partial", "false", "none")
ThoughtMode = Literal["generate", "empty", "shuffled", "oracle", "verify"]
GENERATES = ("generate", "shuffled", "verify")  # modes that run the model to write thoughts
OPTIONS_IN_CONTEXT = ("verify",)


class Settings(_Base):
    thought: ThoughtMode = Field("generate", description="what fills the thought slot: the model's own thought, "
                                 "nothing, another question's thought, the gold premises, or generate-and-verify")
    max_thought_tokens: int = Field(48, gt=0, description="token budget of a thought (verify: of each option's)")
    temperature: float = Field(0.0, ge=0, description="0: greedy; otherwise sampled at this temperature")
    batch_size: int = Field(16, gt=0, description="thoughts generated together")
    instruction: str = Field(RECALL_INSTRUCTION, min_length=1, description="asks the model to recall what it knows")
    lead: str = Field(THOUGHT_LEAD, description="text between the instruction and the thought")
    demonstration: int = Field(0, ge=0, le=8, description="recall drills shown before every prompt (2: a 2-shot "
                               "demonstration of the format)")
    recall_thoughts: bool = Field(True, description="False: the dataset's recall splits are scored after an empty "
                                  "thought (they measure what the model knows, not what a thought retrieves)")


class Thinking(_Record):
    """The cell's thoughts: test-time compute and the implicit-retrieval audit."""

    generate_seconds: float | None = None
    questions: int | None = None
    thought_tokens: int | None = None
    thought_tokens_per_question: float | None = None
    finished_fraction: float | None = None
    retrieval: dict[str, int] = Field(default_factory=dict)  # audit label -> thoughts
    retrieval_rate: float | None = None  # share of thoughts that state every premise the question needs
    settings: dict[str, Any] = Field(default_factory=dict)
    mode: str | None = None  # the thought setting
    options_in_context: bool | None = None  # generate-and-verify: the options were in the context
    demonstration_from: str | None = None  # the dataset whose drills were demonstrated
    shared_thoughts: bool | None = None  # the thoughts came from a cache another cell wrote
    recall_splits: list[str] | None = None  # the dataset's recall splits (no gate or control reads them)


class Info(ContextStageInfo):
    thinking: Thinking | None = None


class Details(_Record):
    """Per question, in its results row: the thought and its audit (:func:`audit_thought`)."""

    thought: str | None = None
    thought_tokens: int | None = None
    thought_finished: bool | None = None
    retrieval: str | None = None  # stated / partial / false / none
    verifiable: bool = True
    statements: int | None = None  # facts the thought states
    false: int | None = None  # of them, facts the world does not hold
    premises_stated: int | None = None
    premises: int | None = None
    thought_of: str | None = None  # shuffled: the question whose thought this is
    no_thought: bool | None = None  # a recall question scored after an empty thought (recall_thoughts: False)


def validate(settings: Settings, check: StageCheck) -> None:
    """A thought fits the model's window; an oracle thought and a demonstration need a family that
    writes its facts."""
    check.check_window("max_thought_tokens", settings.max_thought_tokens)
    if settings.thought not in ("oracle",) and not settings.demonstration:
        return
    from genmodes.data.families import get_family

    for name, ds in check.datasets.items():
        try:
            render = get_family(ds.family).render_fact
        except Exception:  # noqa: BLE001 - an imported dataset of no registered family
            render = None
        if render is None:
            what = "thought: oracle" if settings.thought == "oracle" else "demonstration"
            raise ConfigError(f"{check.where}: {what} needs a dataset family that writes its facts; "
                              f"dataset {name!r} ({ds.family}) has none")


def estimate(settings: Settings, cost: Any) -> StageCost:
    """What the stage does, costed at its own shapes: generating (modes that write thoughts, once per
    model and settings: a shuffled cell reuses the generating cell's thoughts) ``batch_size`` thoughts
    at a time, each batch timed on the configured model with the cell's prompts, after the stage's
    demonstration, to ``max_thought_tokens`` (verify: a row per option); then scoring every question
    after its prompt, thought and cue as the scorer runs it. An empty or oracle thought generates
    nothing; the oracle's is scored at its own text, a generated one at its expected length
    (:func:`genmodes.training.thoughts.expected_thought_tokens`)."""
    ds, qs = cost.dataset, list(cost.dataset.questions)
    think = thinks_on(ds, settings)
    prefix, _ = _demonstration(cost, settings)
    thought_of = _estimated_thoughts(settings, cost, think)
    contexts = [answer_context(q, thought_of.get(q.id, ""), settings.instruction, lead=settings.lead) for q in qs]
    scored = cost.scoring(contexts, prefix=prefix)
    if settings.thought not in GENERATES:
        return StageCost(score_s=scored)
    key = ["thoughts", settings.model_dump(mode="json", exclude={"thought"}) | {"verify": settings.thought == "verify"},
           cost.model_key()]
    if not cost.first(key):
        return StageCost(score_s=scored, note="its thoughts generated by an earlier cell")
    prompts = _prompts(settings, think)
    batch = cost.generation_batch(prompts, settings.batch_size, settings.max_thought_tokens, settings.temperature,
                                  prefix)
    return StageCost(test_s=math.ceil(len(prompts) / settings.batch_size) * batch, score_s=scored)


def _prompts(settings: Settings, think: list[Question]) -> list[str]:
    """What the model continues, one row each: a question's think prompt, or (verify) a drill prompt
    about each of its options."""
    if settings.thought == "verify":
        return [DRILL.format(topic=c.strip().rstrip(".")) for q in think for c in q.choices]
    return [think_prompt(q, settings.instruction, settings.lead) for q in think]


def recall_drills_of(model_settings: Any) -> str:
    return getattr(getattr(model_settings, "finetune", model_settings), "recall_drills", "none")


def warm_start_of(model_settings: Any) -> str:
    """The format the knowledge fine-tune of a model stage's settings teaches: "chain" where a practice
    dataset has chain drills, else its recall drills ("none" without: also a stage with no fine-tune)."""
    ft = getattr(model_settings, "finetune", model_settings)
    return (ft.warm_start() if hasattr(ft, "warm_start") else False) or "none"


def _estimated_thoughts(settings: Settings, cost: Any, think: list[Question]) -> dict[str, str]:
    """Per question that thinks, the text its thought slot is scored with in the estimate: the gold
    premises (oracle), nothing (empty), else a stand-in of the expected length (verify: one per
    option)."""
    if settings.thought == "empty":
        return {}
    if settings.thought == "oracle":
        return {q.id: oracle_thought(cost.dataset, q) for q in think}
    drills = warm_start_of(cost.model_settings)
    warm = drills if drills != "none" else bool(settings.demonstration)
    tokens = expected_thought_tokens(cost.dataset, cost.tokenizer, settings.max_thought_tokens, warm)
    per = len if settings.thought == "verify" else (lambda choices: 1)
    return {q.id: cost.stand_in(tokens * per(q.choices)) for q in think}


def _demonstration(ctx: Any, settings: Settings) -> tuple[str, str | None]:
    """The demonstration before every prompt and the dataset its drills are from (``ctx``: the cell's
    CellContext, or the dry run's CellCost, which has the same dataset fields)."""
    if not settings.demonstration:
        return "", None
    others = sorted(n for n, d in ctx.datasets.items() if d.family == ctx.dataset.family and n != ctx.dataset_name)
    name = others[0] if others else ctx.dataset_name
    return demonstration(ctx.datasets.get(name, ctx.dataset), settings.demonstration, ctx.seed), name


def _cache_key(ctx: CellContext, built: Any, settings: Settings, qs: list[Question]) -> dict[str, Any]:
    """What the generated thoughts depend on: the model built (its checkpoints), how they are
    generated and the questions; a shuffled cell and a generating cell of one model share them."""
    info = getattr(built, "info", None)
    gen = settings.model_dump(exclude={"thought"})
    return {"checkpoints": info.checkpoints() if info is not None else [], "settings": gen,
            "verify": settings.thought == "verify", "prompt_version": PROMPT_VERSION, "seed": ctx.seed,
            "questions": [q.id for q in qs]}


def _read_cache(path: Any, key: dict[str, Any], n: int) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and json.loads(lines[0]) == key and len(lines) == n + 1:
        return [json.loads(x) for x in lines[1:]]
    return None


def _generate(ctx: CellContext, built: Any, settings: Settings, qs: list[Question], prefix: str) -> list[Thought]:
    model, tok = built.model, built.tokenizer
    kw = dict(max_tokens=settings.max_thought_tokens, temperature=settings.temperature, seed=ctx.seed,
              batch_size=settings.batch_size, progress=ctx.progress, desc=f"thinking {ctx.dataset_name}")
    if settings.thought != "verify":
        return generate_thoughts(model, tok, qs, instruction=settings.instruction, lead=settings.lead,
                                 prefix=prefix, **kw)
    # generate-and-verify: one recollection per option, after the drill prompt about that option
    rows = [(q, c.strip().rstrip(".")) for q in qs for c in q.choices]
    got = generate_thoughts(model, tok, [q for q, _ in rows], prompts=[DRILL.format(topic=c) for _, c in rows],
                            prefix=prefix, **kw)
    out, i = [], 0
    for q in qs:
        part = got[i:i + len(q.choices)]
        i += len(q.choices)
        out.append(Thought(" ".join(t.text for t in part if t.text), sum(t.tokens for t in part),
                           all(t.finished for t in part)))
    return out


def thoughts_of(ctx: CellContext, built: Any, settings: Settings, qs: list[Question],
                prefix: str) -> tuple[list[dict[str, Any]], bool]:
    """Each question's generated thought ({id, thought, tokens, finished}), from the run-wide cache
    when a cell of the same model and settings wrote it (then True)."""
    from genmodes.io import atomic_write, wait_lock

    key = _cache_key(ctx, built, settings, qs)
    path = ctx.artifact_dir("thoughts", **key) / "thoughts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with wait_lock(path.with_name("thoughts.lock")):
        cached = _read_cache(path, key, len(qs))
        if cached is not None:
            return cached, True
        thoughts = _generate(ctx, built, settings, qs, prefix)
        rows = [{"id": q.id, "thought": th.text, "tokens": th.tokens, "finished": th.finished}
                for q, th in zip(qs, thoughts)]
        atomic_write(path, "\n".join(json.dumps(x, ensure_ascii=False) for x in [key, *rows]) + "\n")
    return rows, False


def thinks_on(ds: Dataset, settings: Settings) -> list[Question]:
    """The questions that get a thought of the stage's mode (the others: an empty thought)."""
    recall = set() if settings.recall_thoughts else set(ds.meta.get("recall_splits") or [])
    return [q for q in ds.questions if q.split not in recall]


def apply(ctx: CellContext, built: Any, settings: Settings) -> Prepared:
    model, tok = built.model, built.tokenizer
    qs = list(ctx.dataset.questions)
    think = thinks_on(ctx.dataset, settings)
    prefix, demo_from = _demonstration(ctx, settings)
    shared = None
    with Timer() as t:
        if settings.thought in GENERATES:
            rows, shared = thoughts_of(ctx, built, settings, think, prefix)
        else:
            text = {"empty": lambda q: "", "oracle": lambda q: oracle_thought(ctx.dataset, q)}[settings.thought]
            rows = [{"id": q.id, "thought": text(q), "tokens": 0, "finished": True} for q in think]
    by_id = {r["id"]: r for r in rows}
    thought_ids = set(by_id)
    by_id.update({q.id: {"id": q.id, "thought": "", "tokens": 0, "finished": True} for q in qs if q.id not in by_id})
    source = shuffled_order(think, ctx.seed) if settings.thought == "shuffled" else {}
    source.update({q.id: q.id for q in qs if q.id not in source})
    details = _audit_rows(ctx.dataset, qs, by_id, source, settings.thought == "shuffled")
    for q in qs:
        if q.id not in thought_ids:
            details[q.id]["no_thought"] = True
    def context(q: Any) -> str:
        return answer_context(q, details[q.id]["thought"], settings.instruction, lead=settings.lead)

    counts = Counter(d["retrieval"] for d in details.values())
    n = max(1, len(qs))
    tokens = sum(d["thought_tokens"] for d in details.values())
    info = Info(thinking=Thinking(
        generate_seconds=round(t.seconds, 3) if settings.thought in GENERATES else 0.0, questions=len(qs),
        thought_tokens=tokens, thought_tokens_per_question=round(tokens / n, 2),
        finished_fraction=round(sum(d["thought_finished"] for d in details.values()) / n, 4),
        retrieval={k: counts.get(k, 0) for k in RETRIEVAL_LABELS}, retrieval_rate=round(counts.get("stated", 0) / n, 4),
        settings=settings.model_dump(), mode=settings.thought,
        options_in_context=settings.thought in OPTIONS_IN_CONTEXT, demonstration_from=demo_from,
        shared_thoughts=shared, recall_splits=list(ctx.dataset.meta.get("recall_splits") or [])))
    return Prepared(model, tok, prefix=prefix, question_context=context, info=info, question_details=details)


def _audit_rows(ds: Dataset, qs: list[Question], by_id: dict[str, dict[str, Any]], source: dict[str, str],
                shuffled: bool) -> dict[str, dict[str, Any]]:
    """Each question's Details: the thought it is scored after and its audit against its own premises
    (a shuffled thought is audited as this question's: does it state what this question needs?)."""
    knowledge = set(ds.knowledge)
    details: dict[str, dict[str, Any]] = {}
    for q in qs:
        r = by_id[source[q.id]]
        audit = audit_thought(ds, q, r["thought"], knowledge=knowledge)
        details[q.id] = Details(thought=r["thought"], thought_tokens=r["tokens"], thought_finished=r["finished"],
                                thought_of=source[q.id] if shuffled else None, **audit).model_dump(exclude_none=True)
    return details


# ------------------------------------------------------------------------------------------ report

def summary_columns(rows: list[Any]) -> dict[str, Any]:
    """``retrieval_rate`` of a summary row: the share of its thoughts that state every premise the
    question needs (empty where the family has no statement parser)."""
    audited = [d for d in (Details.read(r.details) for r in rows) if not d.no_thought]
    if not audited or not all(d.verifiable and d.retrieval is not None for d in audited):
        return {"retrieval_rate": None}
    return {"retrieval_rate": sum(d.retrieval == "stated" for d in audited) / len(audited)}


def report_sections(view: Any, per_condition: int = 2) -> list[tuple]:
    """The controls P3's claim needs in one table with paired differences, the thoughts before and
    after RL side by side, example thoughts (right and wrong), the implicit-retrieval audit with
    accuracy split by it, and the test-time compute the thoughts add [P3: does thinking help by
    retrieving?]."""
    rows = [(r, view.details(r, Details)) for c, _ in view.cells for r in view.rows(c)]
    rows = [(r, d) for r, d in rows if isinstance(d.thought, str) and not d.no_thought]
    return (report_controls(view) + _side_by_side(view, rows) + _examples(view, rows, per_condition)
            + _audit(view, rows) + _compute(view))


NOT_P3 = "not a test of P3"


def report_gates(view: Any) -> list[tuple]:
    """P3's two gates, shown before any result, with the run's verdict first: (a) the knowledge
    fine-tune knows the facts (the recall gate, every dataset), (b) the gold premises in the thought
    slot beat answering directly (the oracle thought). Where one fails, the RL rows below are marked
    *not a test of P3*."""
    recall_blocks, recall_ok = recall_gate(view)
    oracle_blocks, oracle_ok = oracle_gate_verdict(view)
    if recall_ok is None and oracle_ok is None:
        return []
    failed = [name for name, ok in (("(a) recall", recall_ok), ("(b) oracle thought", oracle_ok)) if ok is False]
    missing = [name for name, ok in (("(a) recall", recall_ok), ("(b) oracle thought", oracle_ok)) if ok is None]
    if failed or missing:
        verdict = (f"**Gates: {' and '.join(failed + [m + ' (not measured)' for m in missing])} "
                   f"{'fail' if len(failed + missing) > 1 else 'fails'}.** This run is **{NOT_P3}**: "
                   "its RL rows are marked so below, and no difference between thinking conditions here can "
                   "show implicit retrieval.")
    else:
        verdict = ("**Gates: both pass.** The knowledge fine-tune knows every dataset's facts and the gold "
                   "premises in the thought slot make the model succeed, so the thinking results below test P3.")
    return [("h", 2, "Gates: is this run a test of P3?"), ("p", verdict)] + recall_blocks + oracle_blocks


def gates_pass(view: Any) -> bool:
    """Both gates measured and passed (the RL rows test P3)."""
    return recall_gate(view)[1] is True and oracle_gate_verdict(view)[1] is True


def recall_gate(view: Any) -> tuple[list[tuple], bool | None]:
    """Gate (a): the model the thinker starts from (the knowledge fine-tune) scores at least the study's
    recall gate on every dataset's recall splits (each seed; the weakest shown), with the RL model's
    recall beside it (does RL keep the facts?). None: no gated cell of that model."""
    r = roles(view)
    thinkers = _thinker(r)
    if not thinkers:
        return [], None
    t = thinkers[0]
    knowledge = [c for c, x in r.items() if x["model"] == r[t]["start"]]
    gates, threshold = view.run.gates(), view.run.config.recall_gate

    def weakest(ds: str, conds: list[str]) -> Any:
        gs = [gates[c.cell] for c in view.run.cells if c.dataset == ds and c.condition in conds and c.cell in gates]
        if not gs:
            return None
        unscored = [g for g in gs if g.recall is None]
        return unscored[0] if unscored else min(gs, key=lambda g: g.recall)

    body, verdicts = [], []
    for ds in view.dataset_order:
        k = weakest(ds, knowledge)
        if k is None:
            continue
        rl = weakest(ds, [t]) if r[t]["trained"] else None
        ok = k.recall is not None and k.recall >= threshold
        verdicts.append(ok)
        body.append([ds, ", ".join(k.splits) or view.DASH, view.DASH if k.questions is None else str(k.questions),
                     view.DASH if k.recall is None else view.pct(k.recall),
                     view.DASH if rl is None or rl.recall is None else view.pct(rl.recall), "pass" if ok else "fail"])
    if not body:
        return [], None
    passed = all(verdicts)
    return [("h", 3, "Gate (a): the fine-tuned model knows the facts"),
            ("p", f"**{'Passed' if passed else 'Failed'}.** Each dataset's recall split (a trained fact asked in a "
                  "phrasing training never uses), scored with no context on the knowledge fine-tune "
                  f"({', '.join(knowledge)}), must reach {round(100 * threshold)}% (the weakest seed shown); the "
                  "fine-tune trains until it does (`until_recall`, at most `max_epochs`: the epochs it took are "
                  f"in *Training to the gate*). Beside it, {t}'s model after RL."),
            ("table", ["dataset", "recall splits", "questions", "fine-tuned recall", f"{t} recall", "gate"], body)], \
        passed


# ---- roles: which condition is which control, read from the stages (never from condition names)

def _model_key(kind: str | None, settings: Any) -> str:
    return json.dumps([kind, settings.model_dump(mode="json") if settings is not None else None], sort_keys=True)


def roles(view: Any) -> dict[str, dict[str, Any]]:
    """Per condition of the run: its thought mode (None: not a thinking condition), its model's key, and
    the key of the model it started from (a model stage's ``starts_from`` hook: RL starts from the
    knowledge fine-tune), so that controls are found by what they are."""
    from genmodes.conditions import model_stage

    out: dict[str, dict[str, Any]] = {}
    for c in view.run.config.conditions:
        st = c.stages
        if st.is_baseline:
            continue
        key = _model_key(st.model, st.model_settings)
        hook = getattr(model_stage(st.model), "starts_from", None)
        start = _model_key(*hook(st.model_settings)) if hook is not None else key
        mode = st.context_settings.thought if st.context == "thinking" else None
        out[c.name] = {"mode": mode, "model": key, "start": start, "context": st.context,
                       "trained": hook is not None}
    return out


def _thinker(r: dict[str, dict[str, Any]]) -> list[str]:
    """Conditions whose model writes its own thought: RL-trained ones first."""
    t = [c for c, x in r.items() if x["mode"] == "generate"]
    return sorted(t, key=lambda c: not r[c]["trained"])


def _recall(view: Any) -> set[str]:
    return {sp for _, i in view.cells if i.thinking is not None for sp in (i.thinking.recall_splits or [])}


def _latent(view: Any, rows: list[Any]) -> list[Any]:
    recall = _recall(view)
    return [r for r in rows if r.split not in recall]


def _paired(view: Any, rows: list[Any], a: str, b: str) -> list[Any]:
    """``a`` minus ``b`` on every (dataset, split) of ``rows``, paired by seed and question."""
    return view.paired([r for r in rows if r.condition in (a, b)], [b, a])


def _diff(view: Any, p: Any) -> str:
    return f"{view.points(p.diff, sign=True)} [{view.points(p.ci[0])}, {view.points(p.ci[1])}]"


def report_controls(view: Any) -> list[tuple]:
    """Every condition's accuracy on every latent split, and the RL thinker minus it, paired by
    question and seed, with a 95% paired-bootstrap interval."""
    r = roles(view)
    thinkers = _thinker(r)
    if not thinkers:
        return []
    t = thinkers[0]
    rows = _latent(view, view.run.results)
    splits = list(dict.fromkeys((x.dataset, x.split) for x in rows))
    order = [c for c in view.condition_order if any(x.condition == c for x in rows)]
    acc: dict[tuple[str, str, str], list[bool]] = {}
    for x in rows:
        acc.setdefault((x.condition, x.dataset, x.split), []).append(x.correct)
    comps = {(c, p.dataset, p.split): p for c in order if c != t for p in _paired(view, rows, t, c)}
    untested = not gates_pass(view)
    body = []
    for c in order:
        line = [c + _role_note(r.get(c), r.get(t)) + (f" — **{NOT_P3}**" if untested and r.get(c, {}).get("trained")
                                                       else "")]
        for ds, sp in splits:
            v = acc.get((c, ds, sp))
            if not v:
                line.append(view.DASH)
                continue
            cell = view.pct(sum(v) / len(v))
            p = comps.get((c, ds, sp))
            line.append(cell + (f" ({_diff(view, p)})" if p is not None else ""))
        body.append(line)
    n = {(ds, sp): len({(x.seed, x.question_id) for x in rows if x.dataset == ds and x.split == sp})
         for ds, sp in splits}
    body.append(["scored questions (over seeds)"] + [str(n[k]) for k in splits])
    notes = [f"Format warm start: {warm_start(view)}."]
    if untested:
        notes.insert(0, f"**A gate fails or was not measured (above): the RL rows are {NOT_P3}.**")
    verify = [c for c, x in r.items() if x["mode"] == "verify"]
    if verify:
        notes.append(f"**{', '.join(verify)}: the options enter the context** (generate-and-verify recalls what the "
                     "model knows about each option before answering), which P1's protocol forbids; P3 reports it "
                     "above chance on reversals and below in-context learning.")
    return [("h", 2, "Thinking: the controls, paired"), ("list", notes),
            ("p", f"Accuracy on every split but the recall splits; in brackets, **{t} minus that condition** in "
                  "points, question by question over the seeds, with its 95% interval (paired bootstrap). The controls "
                  "are found by their stages: answering directly (the same fine-tuned weights, no thought), the "
                  "same weights with an empty thought, with another question's thought (shuffled), the gold "
                  "premises as the thought (oracle)."),
            ("table", ["condition"] + [f"{ds} {sp}" for ds, sp in splits], body)]


def warm_start(view: Any) -> str:
    """What taught the thinkers the format of a recollection: the knowledge fine-tune's recall drills
    and the thinking stage's demonstration, as the conditions set them."""
    out = []
    for c in view.run.config.conditions:
        st = c.stages
        if st.is_baseline or st.context != "thinking" or st.context_settings.thought != "generate":
            continue
        demo = st.context_settings.demonstration
        ft = getattr(st.model_settings, "finetune", st.model_settings)
        chained = getattr(ft, "chain_drills", None)
        drills = recall_drills_of(st.model_settings)
        if chained:
            both = getattr(ft, "recall_drills_on_chain", False)
            drills = (f"chain{f' and {drills}' if both else ''} on {', '.join(chained)}"
                      + (f", {drills} elsewhere" if drills != "none" else ""))
        parts = ([f"recall drills ({drills}) in the knowledge fine-tune"] if drills != "none" else []) + \
            ([f"a {demo}-shot demonstration in the prompt"] if demo else [])
        out.append(f"{c.name}: {' and '.join(parts) or 'none (the prompt alone)'}")
    return "; ".join(out) or "none"


def _role_note(c: dict[str, Any] | None, t: dict[str, Any] | None) -> str:
    if c is None or t is None:
        return ""
    if c["mode"] is None:
        same = c["model"] in (t["model"], t["start"])
        return " (answers directly" + (", the thinker's start)" if same and c["model"] == t["start"] else ")")
    notes = {"empty": "empty thought", "shuffled": "another question's thought", "oracle": "gold premises",
             "verify": "generate-and-verify: options in context", "generate": "own thought"}
    same = ", same weights" if c["model"] == t["model"] else ""
    return f" ({notes.get(c['mode'], c['mode'])}{same})"


def oracle_gate_verdict(view: Any, threshold: float = 0.25) -> tuple[list[tuple], bool | None]:
    """Gate (b): on the transfer datasets' held-out questions, the gold premises as the thought beat the
    same model answering directly by at least ``threshold``; else no thinking result here can show
    implicit retrieval. None: not measured (no oracle-thought condition, or no direct one to pair)."""
    r = roles(view)
    oracle = [c for c, x in r.items() if x["mode"] == "oracle"]
    rows = _latent(view, view.run.results)
    body, verdicts = [], []
    for o in oracle:
        direct = [c for c, x in r.items() if x["mode"] is None and x["model"] == r[o]["model"]]
        for d in direct:
            for ds in dict.fromkeys(x.dataset for x in rows if x.condition == o and x.split.endswith("/transfer")):
                sub = [x for x in rows if x.dataset == ds and x.split.endswith("/transfer")]
                pooled = [x.model_copy(update={"split": "held-out"}) for x in sub]
                for p in _paired(view, pooled, o, d):
                    ok = p.diff >= threshold
                    verdicts.append(ok)
                    body.append([ds, f"{o} − {d}", str(p.n), f"{view.pct(p.acc_a)} vs {view.pct(p.acc_b)}",
                                 _diff(view, p), "pass" if ok else "fail"])
    if not body:
        return [], None
    passed = all(verdicts)
    return [("h", 3, "Gate (b): the oracle thought"),
            ("p", f"**{'Passed' if passed else 'Failed'}.** On each transfer dataset's held-out questions (its "
                  f"recall splits left out), the gold premises written into the thought slot must beat the same "
                  f"model answering directly by at least {round(100 * threshold)} points: a thought can only help "
                  "if the right facts in it make the model succeed." + ("" if passed else
                  " The thinking results of this run are **not a test** of implicit retrieval.")),
            ("table", ["dataset", "difference", "n", "accuracies", "points [95% CI]", "gate"], body)], passed


def _side_by_side(view: Any, rows: list[tuple[Any, Details]], per_split: int = 2) -> list[tuple]:
    """The same questions' thoughts from every thinker (before and after RL), first seed."""
    r = roles(view)
    thinkers = list(reversed(_thinker(r)))  # before RL, then after
    if len(thinkers) < 2:
        return []
    by = {(x.condition, x.seed, x.dataset, x.question_id): (x, d) for x, d in rows}
    seed = min((x.seed for x, _ in rows), default=0)
    recall = _recall(view)
    items = []
    for ds, sp in dict.fromkeys((x.dataset, x.split) for x, _ in rows if x.split not in recall):
        qids = list(dict.fromkeys(x.question_id for x, _ in rows if x.dataset == ds and x.split == sp
                                  and all((t, seed, ds, x.question_id) in by for t in thinkers)))[:per_split]
        for q in qids:
            first = by[(thinkers[0], seed, ds, q)][0]
            parts = []
            for t in thinkers:
                x, d = by[(t, seed, ds, q)]
                parts.append(f"{t}: “{d.thought or '(empty)'}” ({d.retrieval or view.DASH}, "
                             f"{'right' if x.correct else 'wrong'})")
            items.append(f"{ds} · {sp} · `{first.context}` — " + " → ".join(parts))
    if not items:
        return []
    return [("h", 2, "Thoughts before and after RL"),
            ("p", f"The same questions (seed {seed}), each thinker's greedy thought, its audit and whether the "
                  "answer after it was right."), ("list", items)]


def _examples(view: Any, rows: list[tuple[Any, Details]], per_condition: int) -> list[tuple]:
    if not rows:
        return []
    items = []
    for cond in view.condition_order:
        rs = [(r, d) for r, d in rows if r.condition == cond]
        for want in (True, False):
            for r, d in [(r, d) for r, d in rs if r.correct == want][:per_condition]:
                chosen = r.scores[r.chosen].choice if r.scores else "?"
                items.append(f"{cond} · {r.dataset} · {r.split} · {'correct' if want else 'wrong'} "
                             f"({d.retrieval or view.DASH}): `{r.context}` thought: "
                             f"“{d.thought or '(empty)'}” chose `{chosen.strip()}`")
    return [("h", 2, "Example thoughts"), ("list", items)]


def _audit(view: Any, rows: list[tuple[Any, Details]]) -> list[tuple]:
    rows = [(r, d) for r, d in rows if d.verifiable]
    if not rows:
        return []
    groups: dict[tuple[str, str, str], list[tuple[Any, Details]]] = {}
    for r, d in rows:
        groups.setdefault((r.condition, r.dataset, r.split), []).append((r, d))
    c_order = {c: i for i, c in enumerate(view.condition_order)}
    d_order = {d: i for i, d in enumerate(view.dataset_order)}
    body = []
    for key in sorted(groups, key=lambda k: (c_order.get(k[0], 99), d_order.get(k[1], 99), k[2])):
        rs = groups[key]
        n = len(rs)
        share = [sum(d.retrieval == lab for _, d in rs) / n for lab in LABELS]
        st = [r for r, d in rs if d.retrieval == "stated"]
        ns = [r for r, d in rs if d.retrieval != "stated"]

        acc = view.rows_accuracy
        body.append([*key, str(n), *map(view.pct, share), acc(st), acc(ns)])
    untested = "" if gates_pass(view) else f" A gate fails or was not measured: these rows are **{NOT_P3}**."
    return [("h", 2, "Implicit retrieval: did the thought state the facts the question needs?"),
            ("p", "Each thought is read with the dataset family's statement parser: `stated` (every premise of the "
                  "question), `partial` (some), `false` (a fact the world does not hold), `none` (neither). "
                  "Accuracy is split by whether the thought stated the premises." + untested),
            ("table", ["condition", "dataset", "split", "n", *LABELS, "accuracy, stated", "accuracy, not stated"],
             body)]


def _compute(view: Any) -> list[tuple]:
    body = [[c.dataset, c.condition, str(i.thinking.thought_tokens_per_question),
             view.DASH if i.thinking.generate_seconds is None else f"{i.thinking.generate_seconds:.0f}"]
            for c, i in view.cells if i.thinking is not None]
    if not body:
        return []
    return [("h", 2, "Thinking compute: test time"),
            ("p", "Thinking adds test-time compute: a thought generated before each question's choices are scored."),
            ("table", ["dataset", "condition", "thought tokens / question", "thinking seconds"], body)]
