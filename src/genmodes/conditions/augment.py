"""Model stage ``augmented_finetune``: the model writes out the consequences of its training data with
its own in-context abilities, then is fine-tuned on original + generated text [P1, "Augmented
fine-tuning"]. Its settings are ``finetune``'s (the fine-tuning run) plus the augmentation's own;
the generation's batch is ``generation_batch_size`` (the short form's ``batch_size`` beside a nested
``finetune:``).

Sources of augmentations (``Settings.source``):

- ``local``: each training document alone, after a few-shot prompt showing rephrasings and reversals
  of made-up statements; the model rewrites the document more flexibly [P1, local augmentation].
- ``global``: the whole training set (or a seeded subsample that fits ``budget_tokens``, as for the
  ``in_context`` condition) in context, then one document; the model writes the inferences linking
  it to the rest ("Dax are a type of fep ... feps can zarp -> dax can zarp") [P1, global augmentation].
  The training set is encoded once and its KV cache reused for every document
  (:class:`genmodes.generate.PrefixGenerator`).
- ``local+global``: both, as P1 used them together: each part generated (and cached) as its own
  source would be, verified against its own kind of support, then fine-tuned on together.
- ``oracle``: the true reversals and inferences written from the ground truth
  (``Family.oracle_augmentations``): the upper bound that tells "augmentation helps" apart from "this
  model writes poor augmentations".

Generation is train-time compute, cached and resumable: one JSON line per finished document in a
run-wide artifact folder; a restart regenerates only the documents missing there. Every generated
statement is checked against the ground truth (``Family.parse_statements``): counts of true, false and
unverifiable statements, and how many held-out test answers the augmentations state outright, go to
the stage's ``Info.augmentation`` (:class:`Augmentation`) for the report.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, model_validator

from genmodes.conditions.base import Built, CellContext, Info as _Record, StageCheck, StageCost, Timer, write_json_atomic
from genmodes.conditions.finetune import (Info as FinetuneInfo, Settings as FinetuneSettings, train_on_texts,
                                          training_documents)
from genmodes.conditions.finetune import stopping_rule_run  # noqa: F401 - its hook: finetune's
from genmodes.conditions.in_context import model_context_length, select_documents
from genmodes.data.families import get_family
from genmodes.data.text import split_sentences
from genmodes.data.types import Dataset, Fact
from genmodes.errors import ConfigError, DataError

# Bump when a prompt changes: it is part of the cache key, so old generations are not reused.
PROMPT_VERSION = 1

# Few-shot examples in made-up words (none from any dataset): rephrasings AND reversals, in the
# three shapes the families use (a name and a description, a comparison, a category).
LOCAL_PREFIX = """Rewrite each statement in other words, and state it in reverse.

Statement: Mipsa Toller is the inventor of the humming lamp.
Rephrasings and reversals:
- The inventor of the humming lamp is Mipsa Toller.
- Mipsa Toller invented the humming lamp.
- The humming lamp was invented by Mipsa Toller.

Statement: Wugs are heavier than zibs.
Rephrasings and reversals:
- Zibs are lighter than wugs.
- Wugs weigh more than zibs.
- Zibs are not as heavy as wugs.

Statement: Every blicket is a kind of dorp.
Rephrasings and reversals:
- Blickets are dorps.
- One kind of dorp is the blicket.
- Some dorps are blickets.

"""
LOCAL_PROMPT = "Statement: {text}\nRephrasings and reversals:\n-"

GLOBAL_INSTRUCTION = """Below are documents, then one of them again. Write the inferences that link that \
document to the other documents: its reversals, and the conclusions that follow when it is combined with \
other documents.

Example documents:
Dax are a type of fep. Feps can zarp. Lomi Praw is the keeper of the glass well.
Example document: Dax are a type of fep.
Inferences:
- Dax can zarp.
- One type of fep is the dax.

Documents:
"""
GLOBAL_PROMPT = "Document: {text}\nInferences:\n-"

STOP = ("\n\n", "\nStatement:", "\nDocument:")


GENERATED = ("local", "global")  # the sources the model writes; "local+global" is both


def parts(source: str) -> list[str]:
    """The generated sources a ``source`` setting stands for (none for ``oracle``)."""
    return [p for p in GENERATED if p in source.split("+")]


# the short form's augmentation keys that the flat settings rename (they clash with finetune's)
FINETUNE_RENAMED = {"batch_size": "generation_batch_size"}


class Settings(FinetuneSettings):
    """``finetune``'s settings (the fine-tuning run on original + generated texts) plus these."""

    source: Literal["local", "global", "local+global", "oracle"] = "local"
    generator: str | None = Field(default=None, description="model spec that writes the augmentations "
                                                            "(default: the model under study)")
    samples_per_document: int = Field(default=1, ge=1)
    max_new_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy")
    generation_batch_size: int = Field(default=8, ge=1, description="documents generated together")
    # global source: token budget of the training-set context (None = the generator's context
    # length minus room for the prompt and the new tokens), and the in_context-style kept fraction.
    budget_tokens: int | None = Field(default=None, gt=0)
    fraction: float | None = Field(default=None, gt=0, le=1)
    # local/global: augment only a seeded random subset of this fraction of the training documents
    # (all of them are still fine-tuned on). Generation is the costly part on a CPU; paraphrase-heavy
    # datasets state each fact in many documents, so a subset still covers most facts.
    augment_fraction: float | None = Field(default=None, gt=0, le=1)
    # Verification [P3's generate-and-verify]: the model judges each generated statement
    # with its source document(s) in context against alternatives written from the same statement
    # with another entity, and the statement is kept only if preferred by ``verify_margin`` nats.
    verify: Literal["none", "in_context"] = "none"
    verify_margin: float = Field(default=0.0, ge=0, le=100, description="log-probability margin (nats)")
    verify_alternatives: int = Field(default=3, ge=1, le=20, description="alternatives per statement")
    verify_unparsed: Literal["drop", "keep"] = Field(
        default="drop", description="statements the family's parser reads no fact from: no alternative "
                                    "can be built, so verification cannot judge them")

    @model_validator(mode="after")
    def _samples_need_sampling(self) -> "Settings":
        if self.temperature == 0 and self.samples_per_document > 1:
            raise ValueError("samples_per_document > 1 needs temperature > 0 (greedy samples are identical)")
        return self

    def finetune_settings(self) -> FinetuneSettings:
        """The fine-tuning run's settings alone (they key its checkpoint)."""
        return FinetuneSettings(**self.model_dump(include=set(FinetuneSettings.model_fields)))


class Audit(_Record):
    """Statements checked against the ground truth (:func:`verify`)."""

    statements: int | None = None
    true: int | None = None
    false: int | None = None
    unverifiable: int | None = None
    test_answers_stated: int | None = None
    test_answers_total: int | None = None
    verifiable: bool | None = None


class Verification(_Record):
    """In-context verification (:func:`verify_in_context`): what it judged and kept, the audit before it."""

    judged_statements: int | None = None
    comparisons: int | None = None
    no_alternative: int | None = None
    kept: int | None = None
    dropped: int | None = None
    mean_margin: float | None = None
    margin: float | None = None
    seconds: float | None = None
    before: Audit | None = None


class Augmentation(Audit):
    """The augmentation texts a cell trained on: where they came from and their audit (after
    verification, when there is one)."""

    source: str | None = None
    generator: str | None = None
    generated_texts: int | None = None
    generated_documents: int | None = None
    generation_seconds: float | None = None
    cache: str | None = None
    resumed_documents: int | None = None
    generated_now: int | None = None
    documents_in_context: int | None = None  # global: the training set kept in the generator's context
    kept_fraction: float | None = None
    prefix_tokens: int | None = None
    duplicates_dropped: int | None = None
    cut_statements_dropped: int | None = None
    verification: Verification | None = None
    verification_seconds: float | None = None
    examples: list[str] = Field(default_factory=list)


RECALL_GATE = True  # its latent results count only where it knows the facts (genmodes.experiments.gates)


class Info(FinetuneInfo):
    """The fine-tuning run on original + generated texts, the augmentation, and train-time compute
    counted in full (``train_seconds`` = generation + verification + fine-tuning)."""

    augmentation: Augmentation | None = None
    original_texts: int | None = None
    generated_texts: int | None = None
    generation_seconds: float | None = None
    verification_seconds: float | None = None
    finetune_seconds: float | None = None


def validate(settings: Settings, check: StageCheck) -> None:
    """finetune's checks, and a generator that loads and fits the new tokens (and the budget) in its
    window."""
    from genmodes.conditions.finetune import validate as validate_finetune

    validate_finetune(settings, check)
    if settings.source == "oracle":
        return
    specs = None
    if settings.generator is not None:
        from genmodes.errors import ModelError
        from genmodes.models import check_spec

        try:
            check_spec(settings.generator)
        except ModelError as e:
            raise ConfigError(f"{check.where}: generator: {e}") from None
        specs = [settings.generator]
    check.check_window("max_new_tokens", settings.max_new_tokens, specs)
    if settings.budget_tokens is not None:
        check.check_window("budget_tokens", settings.budget_tokens, specs)


def estimate(settings: Settings, cost: Any) -> StageCost:
    """The fine-tune on the documents and the augmentations (oracle: the texts themselves; generated:
    every new token taken as a statement, an upper bound), generating them (local / global) and
    verifying them in context (each statement against its alternatives after its support)."""
    docs = [d.text for d in cost.dataset.documents if settings.kinds is None or d.kind in settings.kinds]
    ft = settings.finetune_settings()
    if settings.source == "oracle":
        return cost.finetune("augmented_finetune", ft, docs + oracle_texts(cost.dataset), shared_with=settings.source)
    n_docs = len(cost.dataset.documents) * (settings.augment_fraction or 1.0)
    generated = round(n_docs * settings.samples_per_document * settings.max_new_tokens) * len(parts(settings.source))
    out = cost.finetune("augmented_finetune", ft, docs, shared_with=settings.source, extra_tokens=generated)
    for part in parts(settings.source):
        batches = math.ceil(n_docs * settings.samples_per_document / settings.generation_batch_size)
        out.train_s += cost.load_s + cost.generation(settings.generation_batch_size, batches, settings.max_new_tokens)
        if part == "global":
            out.train_s += batches * cost.prefix_encoding(min(cost.block_tokens, cost.window))
    if settings.verify == "in_context" and out.train_s > 0:
        # a statement of ~VERIFY_STATEMENT_TOKENS tokens, scored with each alternative after its support
        statements = generated / VERIFY_STATEMENT_TOKENS
        support = cost.mean_document_tokens * (1 if settings.source == "local" else 4)
        per = support + (1 + settings.verify_alternatives) * VERIFY_STATEMENT_TOKENS
        out.train_s += statements * per * cost.score_rate
    return out


VERIFY_STATEMENT_TOKENS = 12  # a generated statement of these families ("One type of fep is the dax.")


# ------------------------------------------------------------------------------------------ text

def split_items(output: str) -> list[str]:
    """A generated list ("a\\n- b\\n- c", the first dash is in the prompt) -> its statements."""
    items = []
    for line in output.split("\n"):
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip()
        if line:
            items.append(line)
    return items


def held_out_answers(ds: Dataset) -> set[Fact]:
    """The answer facts of questions not in a recall split: what training does not state."""
    recall = set(ds.meta.get("recall_splits", []))
    out = set()
    for q in ds.questions:
        if q.split in recall or q.answer >= len(q.choice_facts):
            continue
        f = q.choice_facts[q.answer]
        if f is not None:
            out.add(f)
    return out


def verify(ds: Dataset, texts: Sequence[str]) -> dict[str, Any]:
    """Check generated texts against the ground truth, sentence by sentence.

    Each fact a sentence states is ``true`` (in ``ds.knowledge``) or ``false`` (parsed, not in it); a
    sentence with no parsable fact is ``unverifiable``; ``statements`` = true + false + unverifiable.
    ``test_answers_stated`` counts the distinct held-out answer facts that some text states.
    """
    parse = get_family(ds.family).parse_statements
    knowledge = set(ds.knowledge)
    answers = held_out_answers(ds)
    true = false = unverifiable = 0
    stated: set[Fact] = set()
    for text in texts:
        for sent in split_sentences(text):
            facts = parse(sent) if parse is not None else []
            if not facts:
                unverifiable += 1
            for f in facts:
                if f in knowledge:
                    true += 1
                    stated.add(f)
                else:
                    false += 1
    return {"statements": true + false + unverifiable, "true": true, "false": false,
            "unverifiable": unverifiable, "test_answers_stated": len(stated & answers),
            "test_answers_total": len(answers), "verifiable": parse is not None}


# ------------------------------------------------------------------------------------------ cache

class GenerationCache:
    """Append-only JSONL of finished documents: ``{"doc": id, "outputs": [...], "seconds": s}``.

    Each line is flushed and fsynced as its document finishes. A partial last line (a crash mid-write)
    is cut off on open, so the next append starts on a clean line; a corrupt line elsewhere is an error.
    """

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            return
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # unterminated last line: never finished
            with open(path, "r+b") as f:
                f.truncate(end)
        from genmodes.io import read_jsonl

        try:
            numbered = read_jsonl(path)
        except DataError as e:
            raise DataError(f"{e}; delete the file to regenerate") from None
        for n, rec in numbered:
            if not isinstance(rec.get("doc"), str):
                raise DataError(f"{path}:{n}: corrupt generation record; delete the file to regenerate")
            self.records[rec["doc"]] = rec

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["doc"]] = record


# ------------------------------------------------------------------------------------------ generation

def _row_seed(seed: int, doc_id: str, k: int) -> int:
    return int(hashlib.sha256(f"augment-{seed}-{doc_id}-{k}".encode()).hexdigest()[:15], 16)


def cache_dir(ctx: CellContext, settings: Settings) -> Path:
    return ctx.artifact_dir("augment", source=settings.source, generator=settings.generator or ctx.model_spec,
                            samples=settings.samples_per_document, max_new_tokens=settings.max_new_tokens,
                            temperature=settings.temperature, budget_tokens=settings.budget_tokens,
                            fraction=settings.fraction, augment_fraction=settings.augment_fraction,
                            prompt_version=PROMPT_VERSION)


def generate_augmentations(ctx: CellContext, settings: Settings) -> tuple[list[str], dict[str, Any]]:
    """Generated statements for every training document (``local``/``global``), resuming from the cache.

    Returns the statements (one training text each, in document order) and generation info.
    """
    if settings.source not in ("local", "global"):
        raise ValueError(f"generate_augmentations: source {settings.source!r} is not generated")
    docs = training_documents(ctx, settings)
    context_docs = docs  # global: the whole training set (or its budgeted subsample) is the context
    if settings.augment_fraction is not None:
        import random

        order = sorted(range(len(docs)), key=lambda i: random.Random(f"augment-{ctx.seed}-{docs[i].id}").random())
        chosen = sorted(order[: max(1, round(len(docs) * settings.augment_fraction))])
        docs = [docs[i] for i in chosen]
    from genmodes.io import wait_lock

    folder = cache_dir(ctx, settings)
    # one writer per cache: cells sharing it (run at once by the Ray executor) wait, then reuse it
    with wait_lock(folder.with_name(folder.name + ".lock")):
        return _generate(ctx, settings, docs, context_docs, folder)


def _generate(ctx: CellContext, settings: Settings, docs: list[Any], context_docs: list[Any],
              folder: Path) -> tuple[list[str], dict[str, Any]]:
    cache = GenerationCache(folder / "generations.jsonl")
    todo = [d for d in docs if d.id not in cache.records]
    resumed = len(docs) - len(todo)
    info: dict[str, Any] = {"cache": str(folder), "resumed_documents": resumed, "generated_now": len(todo)}
    if todo:
        spec = settings.generator or ctx.model_spec
        model, tok = ctx.load_model(spec)
        model.eval()
        if settings.source == "local":
            prefix, template = LOCAL_PREFIX, LOCAL_PROMPT
        else:
            template = GLOBAL_PROMPT
            prefix = _global_prefix(ctx, settings, model, tok, docs, context_docs, info)
        write_json_atomic(folder / "settings.json", {
            "source": settings.source, "generator": spec, "samples_per_document": settings.samples_per_document,
            "max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature,
            "prompt_version": PROMPT_VERSION, "prefix": prefix, "prompt": template})
        _generate_missing(ctx, settings, model, tok, prefix, template, todo, cache, len(docs))
        del model
    texts, sources, dropped, cut = _statements(docs, cache)
    info["text_sources"] = sources  # which document each text was written from (verification needs it)
    info["duplicates_dropped"] = dropped
    info["cut_statements_dropped"] = cut
    info["generated_documents"] = len(docs)
    info["generation_seconds"] = sum(cache.records[d.id]["seconds"] for d in docs)
    return texts, info


def _global_prefix(ctx: CellContext, settings: Settings, model: Any, tok: Any, docs: list[Any],
                   context_docs: list[Any], info: dict[str, Any]) -> str:
    """The training set (a seeded subsample that fits the generator's window with the longest prompt
    and the new tokens) after the global instruction; what was kept goes into ``info``."""
    longest = max(len(tok(GLOBAL_PROMPT.format(text=d.text.strip()), add_special_tokens=False).input_ids)
                  for d in docs)
    room = longest + settings.max_new_tokens + 8
    budget = settings.budget_tokens or model_context_length(model) - room
    if budget <= 0:
        raise ConfigError(f"augmented_finetune: no context left for the training set ({room} tokens "
                          f"of prompt and new tokens in a {model_context_length(model)}-token model)")
    kept = select_documents(context_docs, tok, budget, ctx.seed, settings.fraction, GLOBAL_INSTRUCTION)
    if not kept:
        raise ConfigError(f"augmented_finetune: bad setting 'budget_tokens': {budget} tokens hold the "
                          "instruction but no training document")
    prefix = GLOBAL_INSTRUCTION + "\n\n".join(d.text.strip() for d in kept) + "\n\n"
    info.update(documents_in_context=len(kept), kept_fraction=len(kept) / len(context_docs),
                prefix_tokens=len(tok(prefix, add_special_tokens=False).input_ids))
    return prefix


def _generate_missing(ctx: CellContext, settings: Settings, model: Any, tok: Any, prefix: str, template: str,
                      todo: list[Any], cache: GenerationCache, total: int) -> None:
    """Generate the documents not in the cache, a batch at a time (each row seeded by its document),
    appending each finished document to the cache."""
    from genmodes.generate import PrefixGenerator  # transformers: only when generating

    gen = PrefixGenerator(model, tok, prefix)
    bar = None
    if ctx.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=total - len(todo), desc=f"augment ({settings.source})", unit="doc",
                   leave=False)
    n = settings.samples_per_document
    for s in range(0, len(todo), settings.generation_batch_size):
        batch = todo[s:s + settings.generation_batch_size]
        prompts = [template.format(text=d.text.strip()) for d in batch for _ in range(n)]
        seeds = [_row_seed(ctx.seed, d.id, k) for d in batch for k in range(n)]
        with Timer() as t:
            outs, done = gen.generate(prompts, max_new_tokens=settings.max_new_tokens,
                                      temperature=settings.temperature, seeds=seeds, stop=STOP,
                                      return_finished=True)
        for j, d in enumerate(batch):
            cache.append({"doc": d.id, "outputs": outs[j * n:(j + 1) * n], "finished": done[j * n:(j + 1) * n],
                          "seconds": t.seconds / len(batch)})
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def _statements(docs: list[Any], cache: GenerationCache) -> tuple[list[str], list[str], int, int]:
    """(statements, the document each was written from, repeats dropped, cut-off statements dropped).

    A statement repeated within one document's outputs (greedy decoding of a small model loops:
    "- X\n- X\n- X") is kept once: repetition would only reweight it against the original text."""
    texts, sources, dropped, cut = [], [], 0, 0
    for d in docs:
        rec = cache.records[d.id]
        items = []
        for out, fin in zip(rec["outputs"], rec.get("finished", [True] * len(rec["outputs"]))):
            its = split_items(out)
            if not fin and its:  # the token limit cut the last statement mid-sentence
                its, cut = its[:-1], cut + 1
            items += its
        unique = list(dict.fromkeys(items))
        dropped += len(items) - len(unique)
        texts += unique
        sources += [d.id] * len(unique)
    return texts, sources, dropped, cut


def oracle_texts(ds: Dataset) -> list[str]:
    oracle = get_family(ds.family).oracle_augmentations
    if oracle is None:
        raise ConfigError(f"augmented_finetune: family {ds.family!r} has no oracle augmentations")
    return [d.text for d in oracle(ds)]


# ------------------------------------------------------------------------------------------ verification

def alternatives(text: str, fact: Fact, ds: Dataset, k: int, seed: int,
                 context_facts: Sequence[Fact] = ()) -> list[str]:
    """The same statement with another entity: up to ``k`` texts with the fact's object replaced by
    another entity of the same shape (a name for a name, a description for a description), and up to
    ``k`` with its subject replaced. Entities come from the training documents' facts, those of the
    context the statement is judged in first: a statement that garbles its source ("the forgotten
    opera is X" from "the architect of the forgotten opera is X") then competes with the source's own
    wording. No ground truth is consulted: if a swap happens to be true and the model prefers it, the
    statement is dropped, which is the verifier's call to make."""
    import random

    out: list[str] = []
    doc_facts = sorted({f for d in ds.documents for f in d.facts})
    for role in ("object", "subject"):
        here = getattr(fact, role)
        if here not in text:
            continue

        def peers(facts: Sequence[Fact]) -> list[str]:
            ents = {e for f in facts if f.relation == fact.relation for e in (f.subject, f.object)}
            return sorted(e for e in ents if e != here and e[:1].isupper() == here[:1].isupper())

        near = peers(context_facts)
        rest = [e for e in peers(doc_facts) if e not in near]
        random.Random(f"verify-{seed}-{text}-{role}").shuffle(rest)
        found = 0
        for other in near + rest:
            if other in text or here in other and other.replace(here, "", 1) in text:
                continue
            alt = text.replace(here, other)
            if alt in out:
                continue
            out.append(alt)
            found += 1
            if found == k:
                break
    return out


def _support_text(ds: Dataset, source_id: str | None, fact: Fact, source: str) -> str:
    """The context a statement is judged in: its source document (local) or the documents that state
    something about its entities (global, at most 8)."""
    from genmodes.conditions.base import render_documents

    docs = _support_docs(ds, source_id, fact, source)
    return render_documents(docs)


def _support_docs(ds: Dataset, source_id: str | None, fact: Fact, source: str) -> list:
    docs = ds.doc_index()
    if source == "local" and source_id in docs:
        return [docs[source_id]]
    ents = {fact.subject, fact.object}
    related = [d for d in ds.documents if any(f.subject in ents or f.object in ents for f in d.facts)][:8]
    if source_id in docs and docs[source_id] not in related:
        related = [docs[source_id], *related[:7]]
    return related


def verify_in_context(model: Any, tok: Any, ds: Dataset, texts: Sequence[str], sources: Sequence[str | None],
                      settings: Settings, seed: int,
                      kinds: Sequence[str] | None = None) -> tuple[list[bool], dict[str, Any]]:
    """Keep/drop per text: kept when every fact it states beats each of its alternatives by the margin,
    scored by the one scorer with the support documents in context. Statements with no parsable fact
    follow ``verify_unparsed``; a statement with no alternative to compare with is dropped. ``kinds``:
    the source each text was generated by (local: judged with its document, global: with the
    documents about its entities); default ``settings.source`` for all."""
    from genmodes.scoring import Scorer

    parse = get_family(ds.family).parse_statements
    scorer = Scorer(model, tok)
    requests, owners = [], []
    keep = [settings.verify_unparsed == "keep"] * len(texts)
    no_alt = 0
    kinds = list(kinds) if kinds is not None else [settings.source] * len(texts)
    for i, (text, src, kind) in enumerate(zip(texts, sources, kinds)):
        facts = parse(text) if parse is not None else []
        if not facts:
            continue
        keep[i] = True
        for f in facts:
            support = _support_docs(ds, src, f, kind)
            alts = alternatives(text, f, ds, settings.verify_alternatives, seed,
                                context_facts=[g for d in support for g in d.facts])
            if not alts:
                keep[i] = False
                no_alt += 1
                break
            requests.append((_support_text(ds, src, f, kind), [" " + text, *(" " + a for a in alts)]))
            owners.append(i)
    scores = scorer.score(requests, progress=False) if requests else []
    margins = []
    for i, sc in zip(owners, scores):
        m = sc[0].logprob - max(x.logprob for x in sc[1:])
        margins.append(m)
        if not m > settings.verify_margin:
            keep[i] = False
    info = {"judged_statements": len({*owners}), "comparisons": len(requests), "no_alternative": no_alt,
            "kept": sum(keep), "dropped": len(texts) - sum(keep),
            "mean_margin": round(sum(margins) / len(margins), 4) if margins else None}
    return keep, info


def augmentations(ctx: CellContext, settings: Settings) -> tuple[list[str], dict[str, Any]]:
    """The augmentation texts of ``settings.source`` and their info (counts, verification, seconds).

    With ``verify="in_context"`` the audit (true / false / unverifiable against the ground truth) is
    reported before and after verification, and verification's seconds count as train-time compute.
    """
    if settings.source == "oracle":
        texts = oracle_texts(ctx.dataset)
        info: dict[str, Any] = {"generated_documents": len(texts), "generation_seconds": 0.0}
        kinds = [settings.source] * len(texts)
    else:
        texts, info, kinds = _generated(ctx, settings)
    sources = info.pop("text_sources", [None] * len(texts))
    before = verify(ctx.dataset, texts)
    extra: dict[str, Any] = {}
    if settings.verify == "in_context":
        spec = settings.generator or ctx.model_spec
        model, tok = ctx.load_model(spec)
        model.eval()
        with Timer() as t:
            keep, vinfo = verify_in_context(model, tok, ctx.dataset, texts, sources, settings, ctx.seed, kinds)
        del model
        texts = [x for x, k in zip(texts, keep) if k]
        extra = {"verification": {**vinfo, "margin": settings.verify_margin, "seconds": round(t.seconds, 3),
                                  "before": before},
                 "verification_seconds": t.seconds}
    info = {"source": settings.source,
            "generator": None if settings.source == "oracle" else settings.generator or ctx.model_spec,
            "generated_texts": len(texts), **info, **verify(ctx.dataset, texts), **extra,
            "examples": texts[:3]}
    return texts, info


def _generated(ctx: CellContext, settings: Settings) -> tuple[list[str], dict[str, Any], list[str]]:
    """The generated statements of every part of ``settings.source`` (each generated and cached as that
    source alone), their info summed over the parts, and the part each statement came from."""
    texts: list[str] = []
    kinds: list[str] = []
    info: dict[str, Any] = {}
    for part in parts(settings.source):
        t, i = generate_augmentations(ctx, settings.model_copy(update={"source": part}))
        texts += t
        kinds += [part] * len(t)
        for k, v in i.items():
            if k in info and isinstance(v, (int, float, list)) and not isinstance(v, bool):
                info[k] = info[k] + v  # counts, seconds and text sources add up over the parts
            elif k in info and isinstance(v, str):
                info[k] = f"{info[k]}; {v}"  # the parts' cache folders
            else:
                info[k] = v
    return texts, info, kinds


def build(ctx: CellContext, settings: Settings) -> Built:
    generated, aug = augmentations(ctx, settings)
    original = [d.text for d in training_documents(ctx, settings)]
    model, tok, ft = train_on_texts(ctx, settings.finetune_settings(), original + generated,
                                    tag="augmented_finetune")
    gen_s = float(aug["generation_seconds"])
    ver_s = float(aug.get("verification_seconds", 0.0))
    ft_s = float(ft.train_seconds or 0.0)
    # train-time compute, counted honestly: generation + verification + fine-tuning
    info = Info(**{**ft.model_dump(), "augmentation": Augmentation(**aug), "original_texts": len(original),
                   "generated_texts": len(generated), "generation_seconds": gen_s, "verification_seconds": ver_s,
                   "finetune_seconds": ft_s, "train_seconds": gen_s + ver_s + ft_s})
    return Built(model, tok, info=info)


# ------------------------------------------------------------------------------------------ report

def report_sections(view: Any) -> list[tuple]:
    """The augmentation audit (generated statements against the ground truth) and, where statements
    were verified in context, the audit before and after."""
    from genmodes.conditions.finetune import stopping_rule_section

    return _audit_section(view) + _verification_section(view) + stopping_rule_section(view)



def _audit_section(view: Any) -> list[tuple]:
    cells = [(c, i.augmentation) for c, i in view.cells if i.augmentation is not None]
    if not cells:
        return []
    body = []
    for c, a in cells:
        n = a.statements

        def count(v: Any) -> str:
            return view.DASH if v is None else f"{v:g}"

        def part(v: Any) -> str:
            return count(v) + (f" ({view.pct_trim(v / n)})" if v is not None and n else "")

        body.append(view.label(c) + [count(n), part(a.true), part(a.false), part(a.unverifiable),
                                     part(a.test_answers_stated), count(a.generated_documents)])
    return [("h", 2, "Augmentation audit"),
            ("p", "Statements the model generated, checked against the dataset's knowledge: true, false (contradict "
                  "it), unverifiable (parse or unknown entities). Test answers stated: generated statements that "
                  "spell out the answer of a test question (the augmentation works by stating latent "
                  "consequences, so this measures how much of the test it anticipated)."),
            ("table", ["dataset", "condition", "seed", "statements", "true", "false", "unverifiable",
                       "test answers stated", "generated documents"], body)]


def _verification_section(view: Any) -> list[tuple]:
    cells = [(c, i.augmentation) for c, i in view.cells
             if i.augmentation is not None and i.augmentation.verification is not None]
    if not cells:
        return []
    dash = view.DASH
    body = []
    for c, aug in cells:
        v = aug.verification
        before = v.before or Audit()

        def arrow(k: str) -> str:
            b, a = getattr(before, k), getattr(aug, k)
            return f"{dash if b is None else b} -> {dash if a is None else a}"

        body.append(view.label(c) + [str(dash if v.margin is None else v.margin), arrow("true"), arrow("false"),
                                     arrow("unverifiable"), arrow("test_answers_stated"),
                                     str(dash if v.seconds is None else v.seconds)])
    return [("h", 2, "Augmentation verification"),
            ("p", "Each generated statement judged by the model with its source document in context against the "
                  "same statement with another entity swapped in; kept only if preferred by the margin (nats). "
                  "The audit against the ground truth before and after."),
            ("table", ["dataset", "condition", "seed", "margin", "true before -> after", "false before -> after",
                       "unverifiable before -> after", "test answers stated before -> after", "verification s"],
             body)]
