"""Thoughts: a thought before the answer, its reward, and the implicit-retrieval audit [P3].

P3 (Chaudhry, Thiagarajan, Lampinen 2026, "Improving latent generalization using test-time compute",
arXiv 2604.01430) fine-tunes knowledge into a model, then lets it write a chain of thought before it
answers, so that it can bring the facts it needs back into its context ("implicit retrieval"); RL
from correctness feedback teaches it to do that. This module holds what the ``thinking`` context
stage and the ``rl`` model stage share, so that evaluation and RL define "correct" the same way:

- the prompt that asks the model to recall what it knows (:func:`think_prompt`), the stop rule of a
  thought (:func:`cut_thought`), and the text scored after it (:func:`answer_context`: prompt +
  thought + answer cue + the question's own context; the choices follow as continuations);
- what teaches the format without telling which facts a question needs: recall drills ("Recall what
  you know about X:" and X's trained facts in the documents' wording, :func:`recall_drills`) for the
  knowledge fine-tune, or two of them as a demonstration before the prompt (:func:`demonstration`);
- the controls' thoughts: the gold premises in the documents' wording (:func:`oracle_thought`, what a
  perfect implicit retrieval would write) and another question's thought (:func:`shuffled_order`);
- batched thought generation, greedy or sampled (:func:`generate_thoughts`);
- the reward (:func:`rewards`): 1 exactly when the one scorer (:class:`genmodes.scoring.Scorer`)
  picks the right option after the thought, or the dense variant, the probability of the right
  option among the choices; optional length and format terms;
- the audit (:func:`audit_thought`): did the thought state the facts the question needs (its
  premises, read with the family's statement parser), a false fact, or none?
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import NumericError

PROMPT_VERSION = 2
# The prompt ends as a recall drill begins ("Recall what you know about X:"), so a model that learned
# the drills' format recalls in it.
RECALL_INSTRUCTION = "Before answering, recall what you know."
THOUGHT_LEAD = "\nRecall what you know about this:"
# a recall drill: "Recall what you know about X:" then X's trained facts; the topic of a drill is the
# subject of the facts it states
DRILL = "Recall what you know about {topic}:"
DrillFormat = Literal["none", "recall", "answer", "rehearse", "two_topics", "chain"]
ANSWER_CUE = "\nAnswer: "
# A rehearsal (``rehearse`` drills): the answer drill under a cue of its own, so the facts are
# rehearsed and answered from without teaching what a thought after THOUGHT_LEAD looks like (there the
# chain drills of a practice dataset are the only form).
REHEARSE_INSTRUCTION = "First, the facts."
REHEARSE_LEAD = "\nFacts:"
CHAIN_QUESTIONS = 2  # a chain drill per subject and inferred fact asked, at most this many per subject
# The stop rule: a thought is one paragraph; it ends at the first line break (or end-of-text, or
# the token budget). The same rule cuts RL completions, so a trained thought looks like a tested one.
STOP = "\n"

RewardKind = Literal["correct", "probability"]


def think_prompt(q: Question, instruction: str = RECALL_INSTRUCTION, lead: str = THOUGHT_LEAD) -> str:
    """What the model continues with its thought: the question's text, the recall instruction, a lead."""
    return f"{q.context.rstrip()} ...\n{instruction}{lead}"


def cut_thought(text: str) -> str:
    """The thought as the stop rule defines it: up to the first line break, stripped."""
    return text.split(STOP, 1)[0].strip()


def answer_context(q: Question, thought: str, instruction: str = RECALL_INSTRUCTION,
                   cue: str = ANSWER_CUE, lead: str = THOUGHT_LEAD) -> str:
    """The text the choices are scored after: prompt, thought, answer cue, then the question's context."""
    t = cut_thought(thought)
    return think_prompt(q, instruction, lead) + (" " + t if t else "") + cue + q.context


# ------------------------------------------------------------------------------------------ format and controls

def drill_text(topic: str, statements: Sequence[str]) -> str:
    """One recall drill: the drill prompt about ``topic``, then its statements on the same line."""
    return DRILL.format(topic=topic) + " " + " ".join(s.strip() for s in statements)


def recall_drills(ds: Dataset, render: Any = None, form: DrillFormat = "recall", seed: int = 0) -> list[Document]:
    """One drill per subject of the training documents' facts, X, with every trained fact whose subject
    is X in the documents' wording (the family's ``render_fact``), in first-seen order. A drill states
    only what the documents state about X, so it teaches the format of recalling without saying which
    facts a question needs (no inference, no link between X and another subject's facts). Empty where
    the family cannot write its facts.

    ``recall``: "Recall what you know about X:" and the facts. ``answer``: the drill as a thought in the
    thinking format: one of X's facts asked (its sentence cut before the object, drawn by ``seed``), the
    recall prompt, X's facts as the thought, the answer cue and the fact: a trained fact answered after
    recalling it, which keeps the model reading what it recalled (the question is a trained fact, never
    an inference). ``rehearse``: the answer drill under a cue of its own (:data:`REHEARSE_INSTRUCTION`
    and :data:`REHEARSE_LEAD` instead of the thinking prompt's): the facts rehearsed and answered from,
    while what follows the thinking prompt is taught by other drills alone (``chain``). ``two_topics``: the answer drill whose thought, after X's facts, recalls the facts of
    another subject Y drawn uniformly at random (:func:`_second_topics`): the format of a thought that
    goes on to a second topic, without the link a question needs; which topic helps is what RL can
    find. ``chain``: a worked example of recalling, then inferring: the thought states X's facts that
    name another subject (its category), that subject's facts, and so on up the chain
    (:func:`_chain_facts`), and the fact asked is one the thought implies but no document states
    (:func:`_inferred_facts`: a drill for each of up to two; X's own fact where none is). It links X
    with the objects of its inferred facts in training, so a dataset drilled this way must not be
    scored on its latent splits (the ``chain_drills`` setting keeps them to its recall splits)."""
    import random

    render = render or _renderer(ds)
    if render is None or form == "none":
        return []
    by_topic = _facts_by_topic(ds)
    rng = random.Random(f"drills-{seed}")
    seconds = _second_topics(by_topic, seed) if form == "two_topics" else {}
    out = []
    for i, (topic, facts) in enumerate(by_topic.items()):
        statements = [render(f) for f in facts]
        text = drill_text(topic, statements)
        stated = list(facts)
        asked: list[Fact | None] = [None]
        if form in ("answer", "rehearse", "two_topics", "chain"):
            stated = (_chain_facts(by_topic, topic) if form == "chain"
                      else _thought_facts(by_topic, seconds, topic))  # with two_topics, another subject's too
            asked = (_inferred_facts(ds, by_topic, topic, stated, render, rng) if form == "chain" else []) \
                or [rng.choice(facts)]
        for j, f in enumerate(asked):
            if f is not None:
                stem = _question_stem(render(f), f)
                if stem is None:
                    continue
                q = Question(id="drill", split="drill", subtype="drill", context=stem, choices=[], answer=0)
                cue = {"instruction": REHEARSE_INSTRUCTION, "lead": REHEARSE_LEAD} if form == "rehearse" else {}
                text = answer_context(q, " ".join(render(g) for g in stated), **cue) + f" {f.object}."
            out.append(Document(id=f"drill-{i:05d}" + (f"-{j}" if j else ""), text=text, kind="drill",
                                facts=stated, meta={"topic": topic, "format": form,
                                                    **({"second_topic": seconds[topic]} if topic in seconds else {})}))
    return out


def _facts_by_topic(ds: Dataset) -> dict[str, list[Fact]]:
    """Every trained fact, by its subject, in first-seen order."""
    by_topic: dict[str, list[Fact]] = {}
    for d in ds.documents:
        for f in d.facts:
            facts = by_topic.setdefault(f.subject, [])
            if f not in facts:
                facts.append(f)
    return by_topic


def _thought_facts(by_topic: dict[str, list[Fact]], seconds: dict[str, str], topic: str) -> list[Fact]:
    """What a drill's thought about ``topic`` states: its facts, then (``seconds``, two-topic drills)
    those of its second subject."""
    return by_topic[topic] + (by_topic[seconds[topic]] if topic in seconds else [])


def _chain_facts(by_topic: dict[str, list[Fact]], topic: str, depth: int = 2) -> list[Fact]:
    """What a ``chain`` drill's thought about ``topic`` states: each of its facts whose object is
    itself a subject (a link: "X is a kind of Y"), then the linked subject's other facts, then its
    links the same way, up to ``depth`` links (two: what a thought of 64 tokens holds); each fact
    once. A subject with no link: its own facts."""
    out: list[Fact] = []

    def is_link(f: Fact, t: str) -> bool:
        return f.object in by_topic and f.object != t

    def walk(t: str, d: int) -> None:
        for f in [f for f in by_topic.get(t, []) if is_link(f, t)]:
            if f not in out:
                out.append(f)
            out.extend(g for g in by_topic[f.object] if not is_link(g, f.object) and g not in out)
            if d > 1:
                walk(f.object, d - 1)

    walk(topic, depth)
    return out or list(by_topic[topic])


def _inferred_facts(ds: Dataset, by_topic: dict[str, list[Fact]], topic: str, stated: list[Fact],
                    render: Any, rng: Any, k: int = CHAIN_QUESTIONS) -> list[Fact]:
    """Up to ``k`` facts about ``topic`` that the ``stated`` facts imply and no document states: true
    in the dataset's knowledge, not trained, with the relation and object of a stated fact of
    another subject (what a linked subject has, ``topic`` has too: a syllogism), each sentence ending
    with its object; drawn by ``rng`` (none where there is none)."""
    trained = {f for fs in by_topic.values() for f in fs}
    known = set(ds.knowledge)
    cands = []
    for g in stated:
        if g.subject == topic:
            continue
        f = Fact(topic, g.relation, g.object)
        if f in known and f not in trained and f not in cands and _question_stem(render(f), f) is not None:
            cands.append(f)
    return rng.sample(cands, min(k, len(cands)))


def _second_topics(by_topic: dict[str, list[Fact]], seed: int) -> dict[str, str]:
    """Per topic X, the subject a ``two_topics`` drill recalls after X's facts: drawn uniformly among
    all other subjects, so the drills teach that a thought may go on to another subject without
    saying which one (a subject linked to X, such as its category, comes up as often as any other:
    which topic helps a question is left to RL)."""
    import random

    rng = random.Random(f"drills-second-topic-{seed}")
    topics = list(by_topic)
    out: dict[str, str] = {}
    for t in topics:
        others = [u for u in topics if u != t]
        if others:
            out[t] = rng.choice(others)
    return out


def _question_stem(sentence: str, f: Fact) -> str | None:
    """A fact's sentence cut before its object (the question form of a trained fact), or None where
    the sentence does not end with it."""
    end = f" {f.object}."
    return sentence[: -len(end)] if sentence.endswith(end) else None


def demonstration(ds: Dataset, k: int = 2, seed: int = 0, render: Any = None) -> str:
    """``k`` recall drills of ``ds`` (drawn by ``seed``) as a demonstration before every prompt, each
    followed by a blank line; empty where the family cannot write its facts."""
    import random

    drills = recall_drills(ds, render)
    if not drills:
        return ""
    picks = random.Random(f"demonstration-{seed}").sample(drills, min(k, len(drills)))
    return "".join(d.text + "\n\n" for d in picks)


def expected_thought_tokens(ds: Dataset, tokenizer: Any, budget: int, warm_start: bool | str) -> float:
    """What a dry run takes a thought on ``ds`` to be, in tokens, before any thought exists. A model
    given a format warm start (recall drills in its fine-tune, or a demonstration) writes thoughts in
    the drills' form, ended by the stop rule: the mean length of ``ds``'s drill recollections (with
    ``warm_start="two_topics"`` both topics' facts, with ``"chain"`` the linked subjects' too), each
    capped at ``budget``. Without one, or where the family cannot write its facts: the budget (the
    most a thought can be)."""
    render = _renderer(ds) if warm_start else None
    if render is None:
        return float(budget)
    by_topic = _facts_by_topic(ds)
    seconds = _second_topics(by_topic, ds.seed) if warm_start == "two_topics" else {}

    def stated(t: str) -> list[Fact]:
        return _chain_facts(by_topic, t) if warm_start == "chain" else _thought_facts(by_topic, seconds, t)

    lengths = [thought_tokens(tokenizer, " ".join(render(f) for f in stated(t))) for t in by_topic]
    if not lengths:
        return float(budget)
    return sum(min(budget, n) for n in lengths) / len(lengths)


def _renderer(ds: Dataset) -> Any:
    from genmodes.data.families import get_family

    try:
        return get_family(ds.family).render_fact
    except Exception:  # an imported dataset of no registered family
        return None


def oracle_thought(ds: Dataset, q: Question, render: Any = None) -> str:
    """The gold premises of ``q`` written as its thought, in the documents' wording: what a perfect
    implicit retrieval would recall (the oracle-thought gate)."""
    render = render or _renderer(ds)
    if render is None:
        raise ValueError(f"dataset family {ds.family!r} cannot write its facts: no oracle thought")
    return " ".join(render(f) for f in q.premises)


def shuffled_order(questions: Sequence[Question], seed: int) -> dict[str, str]:
    """Question id -> the id of the question whose thought it gets instead of its own: a seeded
    derangement within each split (no question keeps its own thought; a split of one does)."""
    import random

    out: dict[str, str] = {}
    by_split: dict[str, list[Question]] = {}
    for q in questions:
        by_split.setdefault(q.split, []).append(q)
    for split, qs in by_split.items():
        ids = [q.id for q in qs]
        order = list(range(len(ids)))
        random.Random(f"shuffled-{seed}-{split}").shuffle(order)
        # a rotation of a random order: every question gets the next one's thought, never its own
        for i, j in enumerate(order):
            out[ids[j]] = ids[order[(i + 1) % len(order)]]
    return out


def row_seed(seed: int, qid: str, k: int = 0) -> int:
    return int(hashlib.sha256(f"think-{seed}-{qid}-{k}".encode()).hexdigest()[:15], 16)


@dataclass
class Thought:
    text: str
    tokens: int  # generated tokens, the test-time compute of this question
    finished: bool  # ended by the stop rule or end-of-text, not cut by the budget


def generate_thoughts(model: Any, tokenizer: Any, questions: Sequence[Question], *, max_tokens: int = 48,
                      temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
                      instruction: str = RECALL_INSTRUCTION, progress: bool = False,
                      desc: str = "thinking", lead: str = THOUGHT_LEAD, prefix: str = "",
                      samples: int = 1, prompts: Sequence[str] | None = None) -> list[Thought]:
    """``samples`` thoughts per question (question-major: question 0's samples first), in batches,
    after ``prefix`` (a demonstration; its cache computed once). Sampling draws each row from a
    generator seeded by the question id and the sample's index, so a thought does not depend on
    which questions share its batch. ``prompts`` replaces the think prompt of each question (one per
    question)."""
    from tqdm.auto import tqdm

    from genmodes.generate import PrefixGenerator

    gen = PrefixGenerator(model, tokenizer, prefix=prefix)
    texts_of = list(prompts) if prompts is not None else [think_prompt(q, instruction, lead) for q in questions]
    if len(texts_of) != len(questions):
        raise ValueError(f"{len(texts_of)} prompts for {len(questions)} questions")
    rows = [(i, k) for i in range(len(questions)) for k in range(samples)]
    out: list[Thought] = []
    bar = tqdm(total=len(rows), desc=desc, unit="thought", disable=not progress, leave=False)
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        texts, finished = gen.generate([texts_of[i] for i, _ in chunk], max_new_tokens=max_tokens,
                                       temperature=temperature,
                                       seeds=[row_seed(seed, questions[i].id, k) for i, k in chunk], stop=[STOP],
                                       return_finished=True)
        for text, fin in zip(texts, finished):
            t = cut_thought(text)
            n = len(tokenizer(" " + t, add_special_tokens=False).input_ids) if t else 0
            out.append(Thought(t, n, bool(fin)))
        bar.update(len(chunk))
    bar.close()
    return out


# ------------------------------------------------------------------------------------------ reward

def choice_probabilities(logprobs: Sequence[float]) -> list[float]:
    m = max(logprobs)
    e = [math.exp(x - m) for x in logprobs]
    z = sum(e)
    return [x / z for x in e]


@dataclass
class Verdict:
    """The scorer's verdict on one question after one thought."""

    correct: bool  # the scorer's choice is the right option
    p_right: float  # the right option's probability among the choices (softmax of their log-probabilities)


def verdicts(model: Any, tokenizer: Any, questions: Sequence[Question], thoughts: Sequence[str], *,
             instruction: str = RECALL_INSTRUCTION, scorer: Any = None, lead: str = THOUGHT_LEAD,
             prefix: str = "") -> list[Verdict]:
    """Each (question, thought) scored by the one scorer after question + thought + cue, as the
    thinking stage scores it (``prefix``: a demonstration before every prompt). The model's mode is
    restored; a non-finite score stops with an error (a diverged policy)."""
    import torch

    from genmodes.scoring import Scorer, chosen

    if len(questions) != len(thoughts):
        raise ValueError(f"{len(questions)} questions for {len(thoughts)} thoughts")
    if scorer is None:
        scorer = Scorer(model, tokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = scorer.score([(answer_context(q, t, instruction, lead=lead), q.choices)
                                   for q, t in zip(questions, thoughts)], prefix=prefix, progress=False)
    finally:
        if was_training:
            model.train()
    out = []
    for q, sc in zip(questions, scores):
        lps = [s.logprob for s in sc]
        if not all(math.isfinite(x) for x in lps):
            raise NumericError(f"question {q.id!r}: a choice's score is not a number after the thought; "
                               "the policy diverged (lower 'lr'?)")
        out.append(Verdict(chosen(sc) == q.answer, choice_probabilities(lps)[q.answer]))
    return out


def rewards(model: Any, tokenizer: Any, questions: Sequence[Question], thoughts: Sequence[str], *,
            kind: RewardKind = "correct", instruction: str = RECALL_INSTRUCTION, scorer: Any = None,
            length_weight: float = 0.0, max_tokens: int = 48, format_weight: float = 0.0,
            parse: Any = None, lead: str = THOUGHT_LEAD, prefix: str = "") -> list[float]:
    """The reward of each (question, thought): its :func:`verdicts`.

    ``correct``: 1.0 exactly when the scorer's choice (:func:`genmodes.scoring.chosen`) is the right
    option, else 0.0. ``probability``: the softmax over the choices' log-probabilities, at the right
    option. Optional terms: ``- length_weight * tokens / max_tokens`` (at most ``length_weight``: the
    thought re-tokenized can exceed the budget it was generated in) and ``+ format_weight`` when
    ``parse`` (a family's statement parser) reads at least one statement in the thought.
    """
    out = []
    for t, v in zip(thoughts, verdicts(model, tokenizer, questions, thoughts, instruction=instruction,
                                       scorer=scorer, lead=lead, prefix=prefix)):
        r = float(v.correct) if kind == "correct" else v.p_right
        if length_weight:
            r -= length_weight * min(1.0, thought_tokens(tokenizer, t) / max(1, max_tokens))
        if format_weight and parse is not None and states_a_fact(parse, t):
            r += format_weight
        out.append(r)
    return out


def thought_tokens(tokenizer: Any, thought: str) -> int:
    """Tokens of the thought as the stop rule cuts it (0 for an empty thought)."""
    t = cut_thought(thought)
    return len(tokenizer(" " + t, add_special_tokens=False).input_ids) if t else 0


def states_a_fact(parse: Any, thought: str) -> bool:
    """Whether the family's statement parser reads at least one statement in the thought."""
    return bool(parse(cut_thought(thought)))


def reward(model: Any, tokenizer: Any, question: Question, thought: str, kind: RewardKind = "correct",
           **kw: Any) -> float:
    """:func:`rewards` of one question and thought."""
    return rewards(model, tokenizer, [question], [thought], kind=kind, **kw)[0]


# ------------------------------------------------------------------------------------------ audit

RETRIEVAL_LABELS = ("stated", "partial", "false", "none")


def _same_fact(f: Fact, stated: set[Fact], knowledge: set[Fact]) -> bool:
    """``f`` stated as is, or the other way round where the world holds both directions (a reversal
    family's "X is D" and "D is X" are one fact read two ways; "All A are B" and "All B are A" are not)."""
    rev = Fact(f.object, f.relation, f.subject)
    return f in stated or (rev in stated and rev in knowledge and f in knowledge)


def audit_thought(ds: Dataset, q: Question, thought: str, parse: Any = None,
                  knowledge: set[Fact] | None = None) -> dict[str, Any]:
    """Did the thought state the facts the question needs (its ``premises``)?

    ``stated``: every premise; ``false``: a fact the world does not hold, and not every premise;
    ``partial``: some premises, nothing false; ``none``: no premise and nothing false (including a
    thought with no parsable statement). ``verifiable`` is False where the family has no parser.
    """
    if parse is None:
        from genmodes.data.families import get_family

        try:
            parse = get_family(ds.family).parse_statements
        except Exception:  # an imported dataset of no registered family
            parse = None
    if parse is None:
        return {"retrieval": "none", "verifiable": False, "statements": 0, "false": 0, "premises_stated": 0,
                "premises": len(q.premises)}
    know = knowledge if knowledge is not None else set(ds.knowledge)
    facts = parse(cut_thought(thought)) if thought else []
    stated = set(facts)
    false = sum(1 for f in facts if f not in know)  # closed world: a fact it does not list is false
    hit = sum(1 for p in q.premises if _same_fact(p, stated, know))
    if q.premises and hit == len(q.premises):
        label = "stated"
    elif false:
        label = "false"
    elif hit:
        label = "partial"
    else:
        label = "none"
    return {"retrieval": label, "verifiable": True, "statements": len(facts), "false": false,
            "premises_stated": hit, "premises": len(q.premises)}
