"""Latent codebooks [P2, "latent learning", codebook task; from-scratch track].

Each of K codebooks maps a shared alphabet of input symbols (``a`` ... ) to nonsense code words, like a
small language. Training shows every codebook *defined* in full (kind ``definition``) but *used* in
encoding sequences (kind ``sequence``) for only some of its mappings. The test asks for the encoding
of a symbol as the last step of a new sequence:

- ``seen``: every symbol's mapping was used in training sequences (recall; the sequence itself is new);
- ``latent``: the queried mapping is defined but never used in any training sequence;
- ``seen_in_context`` / ``latent_in_context``: the same, with the codebook's definition placed in the
  question context (what an oracle episodic memory would retrieve).

Texts are short, whitespace-separated tokens over a small vocabulary, for a word-level tokenizer and a
small transformer trained from scratch::

    codebook zib : a = fop ; b = trel ; c = klu .
    encode with zib : a c b -> fop klu trel

A fraction of training sequences carry the definition before the encoding (only seen mappings are
encoded there): P2 finds a model learns to use retrieved episodes only when training already pairs
related information within one sequence.

Facts: a definition states ``(book, "defines S as", code)``; an encoding shows
``(book, "encodes S as", code)``. Knowledge holds both for every mapping, so a latent question's
answer fact ("encodes") is in no training document while its premise ("defines") is.
Choices are the correct code word and other code words of the same codebook, drawn from the same pool
(used or latent): a model cannot pick the answer by how often a word appeared as an output.
Question subtype = the codebook, so standard errors are over codebooks.
"""

from __future__ import annotations

import random
import re
import string

from pydantic import Field, model_validator

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.nonsense import NonsenseWords
from genmodes.data.types import Dataset, Document, Fact, Question

RECALL_SPLITS = ["seen", "seen_in_context"]


class CodebookConfig(FamilyConfig):
    n_codebooks: int = Field(12, ge=1, le=200)
    n_symbols: int = Field(12, ge=2, le=26, description="input symbols per codebook (letters a..)")
    n_used: int = Field(6, ge=1, description="mappings per codebook used in training sequences")
    sequences_per_codebook: int = Field(200, ge=1)
    min_len: int = Field(2, ge=1)
    max_len: int = Field(6, ge=1)
    definition_copies: int = Field(5, ge=1, description="definition documents per codebook (mapping order shuffled)")
    p_definition_in_sequence: float = Field(0.2, ge=0.0, le=1.0)
    questions_per_codebook: int = Field(20, ge=1, description="per split")
    n_choices: int = Field(4, ge=2)

    @model_validator(mode="after")
    def _check(self) -> "CodebookConfig":
        if self.n_used >= self.n_symbols:
            raise ValueError(f"n_used ({self.n_used}) must be below n_symbols ({self.n_symbols}): "
                             "some mappings must stay latent")
        if self.n_choices > min(self.n_used, self.n_symbols - self.n_used):
            raise ValueError(f"n_choices ({self.n_choices}) exceeds the used ({self.n_used}) or latent "
                             f"({self.n_symbols - self.n_used}) mappings a codebook has to draw choices from")
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) is above max_len ({self.max_len})")
        return self


def defines(book: str, sym: str, code: str) -> Fact:
    return Fact(book, f"defines {sym} as", code)


def encodes(book: str, sym: str, code: str) -> Fact:
    return Fact(book, f"encodes {sym} as", code)


def definition_text(book: str, pairs: list[tuple[str, str]]) -> str:
    return f"codebook {book} : " + " ; ".join(f"{s} = {c}" for s, c in pairs) + " ."


def sequence_text(book: str, syms: list[str], codes: list[str]) -> str:
    return f"encode with {book} : {' '.join(syms)} -> {' '.join(codes)}"


def generate(config: CodebookConfig, seed: int) -> Dataset:
    rng = random.Random(f"codebook-{seed}")
    words = NonsenseWords(seed, namespace="codebook", distinct_prefix_len=3)
    alphabet = list(string.ascii_lowercase[: config.n_symbols])
    books = words.take(config.n_codebooks)
    maps: dict[str, dict[str, str]] = {b: dict(zip(alphabet, words.take(config.n_symbols))) for b in books}
    used: dict[str, list[str]] = {b: sorted(rng.sample(alphabet, config.n_used)) for b in books}
    latent: dict[str, list[str]] = {b: [s for s in alphabet if s not in used[b]] for b in books}

    docs: list[Document] = []
    def_ids: dict[str, list[str]] = {b: [] for b in books}
    canonical_def: dict[str, str] = {}
    for b in books:
        for k in range(config.definition_copies):
            pairs = list(maps[b].items())
            if k:  # the first copy in alphabet order, the others shuffled
                rng.shuffle(pairs)
            text = definition_text(b, pairs)
            canonical_def.setdefault(b, text)
            did = f"cb-def-{b}-{k}"
            def_ids[b].append(did)
            docs.append(Document(id=did, text=text, kind="definition",
                                 facts=sorted(defines(b, s, c) for s, c in pairs), meta={"codebook": b}))

    # Training sequences over used symbols; the question sequences are kept apart from them.
    trained_seqs: set[tuple[str, tuple[str, ...]]] = set()
    for b in books:
        for k in range(config.sequences_per_codebook):
            n = rng.randint(config.min_len, config.max_len)
            syms = [rng.choice(used[b]) for _ in range(n)]
            trained_seqs.add((b, tuple(syms)))
            codes = [maps[b][s] for s in syms]
            text = sequence_text(b, syms, codes)
            facts = sorted({encodes(b, s, maps[b][s]) for s in syms})
            with_def = rng.random() < config.p_definition_in_sequence
            if with_def:
                text = canonical_def[b] + "\n" + text
                facts = sorted(set(facts) | {defines(b, s, c) for s, c in maps[b].items()})
            docs.append(Document(id=f"cb-seq-{b}-{k:04d}", text=text, kind="sequence", facts=facts,
                                 meta={"codebook": b, "with_definition": with_def}))

    questions: list[Question] = []
    for split, pool_of, in_context in (("seen", used, False), ("latent", latent, False),
                                       ("seen_in_context", used, True), ("latent_in_context", latent, True)):
        qrng = random.Random(f"codebook-{seed}-{split}")
        for b in books:
            asked: set[tuple[str, ...]] = set()
            for _ in range(config.questions_per_codebook):
                for _try in range(100):
                    target = qrng.choice(pool_of[b])
                    n = qrng.randint(config.min_len, config.max_len)
                    # the target never appears earlier: its code word would be visible in the prefix
                    others = [s for s in used[b] if s != target]
                    syms = tuple([qrng.choice(others) for _ in range(n - 1)] + [target])
                    if (b, syms) not in trained_seqs and syms not in asked:
                        break
                else:  # a tiny alphabet can run out of new sequences: ask fewer questions
                    break
                asked.add(syms)
                prefix = [maps[b][s] for s in syms[:-1]]
                query = f"encode with {b} : {' '.join(syms)} ->" + (" " + " ".join(prefix) if prefix else "")
                context = canonical_def[b] + "\n" + query if in_context else query
                wrong = qrng.sample([s for s in pool_of[b] if s != target], config.n_choices - 1)
                options = [target] + wrong
                qrng.shuffle(options)
                questions.append(Question(
                    id=f"cb-{split}-{len(questions):05d}", split=split,
                    subtype=b, context=context,
                    choices=[" " + maps[b][s] for s in options], answer=options.index(target),
                    support=list(def_ids[b]), premises=[defines(b, target, maps[b][target])],
                    choice_facts=[encodes(b, target, maps[b][s]) for s in options],
                    meta={"codebook": b, "symbol": target, "sequence": list(syms),
                          "latent": target in latent[b], "in_context": in_context}))

    knowledge = sorted({f for b in books for s, c in maps[b].items() for f in (defines(b, s, c), encodes(b, s, c))})
    return Dataset(
        family="codebook", config=config.model_dump(), seed=seed, documents=docs, questions=questions,
        knowledge=knowledge,
        meta={"recall_splits": RECALL_SPLITS, "entities": books + [c for b in books for c in maps[b].values()],
              "codebooks": {b: {"map": maps[b], "used": used[b], "latent": latent[b]} for b in books},
              "vocabulary": sorted({t for d in docs for t in d.text.split()})})


_DEF = re.compile(r"codebook (\S+) : ((?:\S+ = \S+(?: ; )?)+) \.")
_SEQ = re.compile(r"encode with (\S+) : ((?:\S+ )*\S+) -> ((?:\S+ )*\S+)")


def parse_statements(text: str) -> list[Fact]:
    """Definitions -> ``defines`` facts; complete encodings -> ``encodes`` facts (one per symbol)."""
    facts: list[Fact] = []
    for line in text.splitlines():
        line = line.strip()
        if m := _DEF.fullmatch(line):
            for pair in m.group(2).split(" ; "):
                s, c = pair.split(" = ")
                facts.append(defines(m.group(1), s, c))
        elif m := _SEQ.fullmatch(line):
            syms, codes = m.group(2).split(), m.group(3).split()
            if len(syms) == len(codes):
                facts.extend(encodes(m.group(1), s, c) for s, c in zip(syms, codes))
    return list(dict.fromkeys(facts))


def oracle_augmentations(ds: Dataset) -> list[Document]:
    """Encoding sequences that use the latent mappings (what training never showed), none equal to a
    question's sequence, each mixing the latent symbol with used ones."""
    cfg = CodebookConfig(**ds.config)
    rng = random.Random(f"codebook-oracle-{ds.seed}")
    asked = {(q.meta["codebook"], tuple(q.meta["sequence"])) for q in ds.questions}
    out: list[Document] = []
    for b, info in ds.meta["codebooks"].items():
        m = info["map"]
        for s in info["latent"]:
            made = 0
            for _ in range(200):
                if made == 5:
                    break
                n = rng.randint(cfg.min_len, cfg.max_len)
                syms = [rng.choice(info["used"]) for _ in range(n)]
                syms[rng.randrange(n)] = s
                if (b, tuple(syms)) in asked:
                    continue
                out.append(Document(id=f"cb-aug-{b}-{s}-{made}", text=sequence_text(b, syms, [m[x] for x in syms]),
                                    kind="augmentation", facts=sorted({encodes(b, x, m[x]) for x in syms}),
                                    meta={"codebook": b, "symbol": s}))
                made += 1
    return out


FAMILY = Family(
    name="codebook",
    description="P2 latent codebooks: mappings defined in training but never used, asked with and without the definition in context",
    config=CodebookConfig,
    generate=generate,
    parse_statements=parse_statements,
    oracle_augmentations=oracle_augmentations,
)
