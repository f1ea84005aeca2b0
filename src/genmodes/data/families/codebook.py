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

    codebook zib : fop = a ; trel = b ; klu = c .
    encode with zib : a c b -> fop klu trel

Keeping the latent mappings latent. P2's claim is that a parametric learner cannot use a mapping it
only saw defined, while a definition retrieved into the context can be used. Whether that holds
depends on where and how definitions are written. Measured with the from-scratch model of
``configs/latent_codebook.yaml`` (3 layers, d_model 128, 600 steps; latent accuracy from the
parameters, chance 25%; commands in docs/RESULTS.md, "From scratch", lever table):

- ``definition_form``. With symbol-first definitions ("a = fop", the seed's form) a definition
  trains the very lookup encoding needs, (codebook, symbol) -> code, only after "=" instead of
  after "->": the seed's model encoded latent mappings from its parameters (87.5%). Code-first
  definitions ("fop = a", the default) train the lookup (codebook, code) -> symbol, whose reverse
  encoding needs (the reversal curse, as in the ``relations`` family): 57.1% with the seed's order.
  With the definition in the context, a code word stands right before its symbol and can be read off.
- ``shuffle_definitions``. In the seed every episode and every question carried the codebook's
  first definition copy, in alphabet order, so the code of the i-th letter always stood in the i-th
  slot, a way to encode without any symbol-code lookup. Each definition now has its own random
  order, episodes included: 40.8%.
- ``n_fresh_episodes``: episodes over practice codebooks (their own names and code words) with a new
  random mapping in every episode, defined and then used for any symbol, so their encoding can only
  be read from the context. Episodes over the real codebooks encode seen mappings, which the
  parameters already know, so they give a small model little reason to read its context. With
  1,000 of them: 19.2% (25.4% with ``copy_init``, flat through training, seen mappings 100%). The
  practice episodes also take most of the tokens, so the real codebooks are trained on less; with
  copy_init, latent use did not stay at chance with longer training (below).
- Episodes that put a definition before an encoding are what carry the rest: P2's no-episodes
  ablation of the same config (no definition ever next to an encoding, no practice episodes) is at
  29.6% too, against 40.8% with the real-codebook episodes and no practice ones.
- ``fresh_min_len`` / ``fresh_max_len``: encoding length of practice episodes; longer encodings put
  more read-from-the-definition tokens in each episode. 6-12 symbols (with copy_init, 600 steps):
  still no reading, 18.8% on ``practice_in_context``.
- ``practice_questions: n`` adds ``practice_in_context``: a never-trained codebook defined in the
  context and a question about it, which only reading the definition answers (the practice episodes'
  skill, apart from the real codebooks). Measured: 12-31% (chance 25%) in every model so far, on CPU
  and GPU, up to 1,200 steps: the models do not read definitions, so no latent use they get right
  comes from the context.
- Latency and copy_init: with copy_init (the output embedding starts as the input one) latent uses
  from the parameters came out at 25.4%, 37.9% (GPU) and 40.0% (CPU, the vocabulary of
  ``practice_questions``), rising with steps (44% at step 1,200 on the GPU, curve sample): a partial
  reverse path from a definition to the encoding. Without copy_init: 19.2% and, in
  ``configs/latent_codebook.yaml`` now, 29.2% (seen 99.6%).
- ``standalone_definitions: false`` keeps definitions only inside episodes (encoding sequences that
  begin with the definition; only seen mappings are ever encoded there), P2's other placement; the
  oracle then retrieves one such episode as the support (not measured yet).

- ``code_words``. With code words of its own per codebook (``own``, the default), a code word belongs
  to one codebook and is written next to one symbol in every definition, so the asked symbol alone
  picks a latent use's code among the codebook's words: the committed from-scratch model with practice
  scored 53.8% on latent uses from its parameters, and 59.2% with the codebook's name in the question
  swapped for another's (so not by recalling the codebook's mapping), and the ``neighbour`` baseline
  (the option written beside the question's last word in training) answers every interleaved latent
  question. ``shared``: every codebook permutes one set of ``n_symbols`` code words (rows of Latin
  squares), and a mapping is latent exactly when its word is one of the latent words; each option of a
  latent question then stands for the asked symbol in exactly one codebook, where it is latent too, so
  only the codebook and the symbol together answer it (the baselines are at chance).

Practice that cannot be memorised (as in the ``relations`` family): practice episodes drawn once and
replayed every epoch are memorised rather than read. ``rebind_practice`` declares the practice
codebooks and code words as the dataset's rebind pools, so a from-scratch run with ``fresh_bindings``
gives every practice episode a new mapping each epoch (its code words permuted within the pool);
``targets`` puts the loss (``loss: targets``) on the words the context or the parameters determine
(the codes after "->"; a real definition's word after each "="; in a practice episode only its codes);
``n_repeats`` adds repeat drills over the practice code words (:mod:`genmodes.data.families.drills`).
With ``practice_questions`` the dataset declares ``practice_in_context`` as its calibration ladder
(``meta["calibration_splits"]``, gate 90%): a retrieval result counts only for a model that reads a
definition in its context.

A fraction of training sequences carry the definition before the encoding (only seen mappings are
encoded there): P2 finds a model learns to use retrieved episodes only when training already pairs
related information within one sequence.

Facts: a definition states ``(book, "defines S as", code)``; an encoding shows
``(book, "encodes S as", code)``. Knowledge holds both for every mapping, so a latent question's
answer fact ("encodes") is in no training document while its premise ("defines") is.
Choices are the correct code word and other code words of the same codebook, drawn from the same pool
(used or latent): a model cannot pick the answer by how often a word appeared as an output. Neither
the wrong options' symbols nor the target occur earlier in the question's sequence, so no option's
code word is in the sequence so far (the seed's options let "the option least in the sequence"
score 46% on ``seen``, chance 25%).
Question subtype = the codebook, so standard errors are over codebooks.
"""

from __future__ import annotations

import random
import re
import string
from typing import Any, Literal

from pydantic import Field, model_validator

from genmodes.data.families import Family, FamilyConfig
from genmodes.data.families.drills import repeat_documents
from genmodes.data.nonsense import NonsenseWords
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

RECALL_SPLITS = ["seen", "seen_in_context"]


class CodebookConfig(FamilyConfig):
    OMIT_AT_DEFAULT = ("targets", "rebind_practice", "n_repeats", "repeat_min_len", "repeat_max_len",
                       "repeat_reversed", "real_code_drills", "real_code_episodes", "encoding_form",
                       "fresh_distinct", "drill_symbols", "real_name_episodes", "known_name_questions",
                       "practice_distractors", "real_code_drill_pool", "drill_symbol_targets", "code_words",
                       "distractor_words")

    n_codebooks: int = Field(12, ge=1, le=200)
    n_symbols: int = Field(12, ge=2, le=26, description="input symbols per codebook (letters a..)")
    n_used: int = Field(6, ge=1, description="mappings per codebook used in training sequences")
    sequences_per_codebook: int = Field(200, ge=1)
    min_len: int = Field(2, ge=1)
    max_len: int = Field(6, ge=1)
    definition_copies: int = Field(5, ge=1, description="definition documents per codebook (mapping order shuffled)")
    p_definition_in_sequence: float = Field(0.2, ge=0.0, le=1.0)
    definition_form: Literal["code_first", "symbol_first"] = Field(
        "code_first", description="code_first: 'fop = a' (a lookup symbol -> code cannot reuse it); symbol_first: 'a = fop'")
    encoding_form: Literal["aligned", "interleaved"] = Field(
        "aligned", description="aligned: 'a c b -> fop klu trel' (the k-th code is the k-th symbol's, so reading a "
        "definition also needs finding which symbol comes next); interleaved: 'a -> fop ; c -> klu ; b -> trel' "
        "(each code right after its symbol: a definition in context is read by one lookup)")
    shuffle_definitions: bool = Field(True, description="every definition in its own random order (False: the "
                                      "seed's, whose first copy, the one in episodes and questions, is in alphabet order)")
    standalone_definitions: bool = Field(True, description="definition documents of their own (else only in episodes)")
    n_fresh_episodes: int = Field(0, ge=0, description="episodes over practice codebooks with a new random mapping each")
    n_practice_books: int = Field(20, ge=1)
    n_practice_codes: int = Field(60, ge=2)
    fresh_min_len: int | None = Field(None, ge=1, description="encoding length of practice episodes (None: min_len)")
    fresh_max_len: int | None = Field(None, ge=1, description="encoding length of practice episodes (None: max_len)")
    fresh_distinct: bool = Field(False, description="practice episodes encode each symbol at most once, so every "
                                 "code is read from the definition (none from earlier in the same encoding)")
    practice_questions: int = Field(0, ge=0, description="questions of the split practice_in_context (0: none)")
    known_name_questions: int = Field(0, ge=0, description="questions of the split known_name_in_context (0: none): "
                                      "a real codebook's name defined in the context with a new mapping over other "
                                      "real codebooks' code words, so only reading answers it although the parameters "
                                      "know the name and the words (what a retrieved definition needs); the "
                                      "calibration ladder's second rung")
    targets: bool = Field(False, description="documents carry meta targets, the words `loss: targets` trains on: "
                          "the codes after '->'; in the real codebooks' definitions the word after each '=' (the "
                          "parameters determine it); practice episodes only their codes after '->'")
    rebind_practice: bool = Field(False, description="declare the practice codebooks and code words as rebind pools, "
                                  "so training with fresh_bindings gives every practice episode and drill a new "
                                  "mapping each epoch (practice that cannot be memorised)")
    n_repeats: int = Field(0, ge=0, description="repeat drills: a run of distinct practice code words, then the same "
                           "run again (the second run is read from the first)")
    repeat_min_len: int = Field(3, ge=1)
    repeat_max_len: int = Field(12, ge=1)
    repeat_reversed: float = Field(0.0, ge=0.0, le=1.0, description="share of repeat drills whose second run is "
                                   "the first reversed")
    drill_symbols: bool = Field(False, description="drills over practice code words draw from the input symbols "
                                "too, so matching a symbol with its earlier copy (the key of a definition's lookup) "
                                "is practised, not only copying code words")
    drill_symbol_targets: Literal["always", "curriculum", "never"] = Field(
        "always", description="with drill_symbols, when a drill's symbols carry the loss: always; curriculum (while "
        "the from-scratch curriculum trains practice alone; after it a symbol in a drill is a key only); never "
        "(copying a symbol out trains its output embedding to follow its input one, and a definition's "
        "'code = symbol' ties that output to the code word: a path from the symbol back to its code in the "
        "parameters)")
    real_code_drills: float = Field(0.0, ge=0.0, le=1.0, description="share of repeat drills over the real "
                                    "codebooks' code words (rebound among them each epoch), so reading the context is "
                                    "practised on the words a latent use must output")
    real_code_drill_pool: Literal["all", "used"] = Field(
        "all", description="the real code words real_code_drills copy: all, or used (only the codes of the mappings "
        "training sequences use, so no practice ever copies a latent use's answer)")
    real_code_episodes: float = Field(0.0, ge=0.0, le=1.0, description="share of practice episodes whose code words "
                                      "are the real codebooks' (a practice codebook's random mapping over them, "
                                      "rebound each epoch)")
    real_name_episodes: float = Field(0.0, ge=0.0, le=1.0, description="share of practice episodes that define a "
                                      "real codebook's name with a new random mapping over the practice code words "
                                      "(the name rebound among the real ones each epoch): a definition in context is "
                                      "read even for a codebook the parameters know, as the relations' stories do "
                                      "for known entities, without practice copying a real code word")
    practice_distractors: float = Field(0.0, ge=0.0, le=1.0, description="share of practice episodes whose context "
                                        "also holds another practice codebook's definition (before or after its "
                                        "own), so reading finds the asked codebook's definition among several, as a "
                                        "retrieved context holds the support among distractors")
    code_words: Literal["own", "shared"] = Field(
        "own", description="own: every codebook has code words of its own; shared: every codebook maps the "
        "alphabet onto one set of n_symbols code words (a substitution cipher's), as the rows of Latin "
        "squares (in each block of n_symbols codebooks a code word stands for each symbol once), and a "
        "mapping is latent exactly when its code word is one of the n_symbols - n_used latent code words: a "
        "latent question's options then each stand for the asked symbol in one codebook, where it is latent "
        "too, so neither the symbol nor the codebook alone picks the answer, only the two together")
    distractor_words: Literal["own", "same"] = Field(
        "own", description="the code words of a practice episode's distractor definition (practice_distractors): "
        "own (drawn from the practice words apart) or same (the episode's own words in another mapping, as a "
        "retrieved real definition is with code_words: shared, so only the codebook's name tells which "
        "definition to read)")
    questions_per_codebook: int = Field(20, ge=1, description="per split")
    n_choices: int = Field(4, ge=2)

    @model_validator(mode="after")
    def _check(self) -> "CodebookConfig":
        if self.n_used >= self.n_symbols:
            raise ValueError(f"n_used ({self.n_used}) must be below n_symbols ({self.n_symbols}): "
                             "some mappings must stay latent")
        if self.n_choices > min(self.n_used - 1, self.n_symbols - self.n_used):
            raise ValueError(f"n_choices ({self.n_choices}) must be below the used ({self.n_used}) and at most the "
                             f"latent ({self.n_symbols - self.n_used}) mappings: a seen question's wrong options "
                             "and its target stay out of the sequence before it, which needs one more used symbol")
        if self.n_practice_codes < self.n_symbols and self.n_fresh_episodes:
            raise ValueError(f"n_practice_codes ({self.n_practice_codes}) is below n_symbols ({self.n_symbols})")
        if self.fresh_distinct and (self.fresh_max_len or self.max_len) > self.n_symbols:
            raise ValueError(f"fresh_max_len ({self.fresh_max_len or self.max_len}) exceeds the {self.n_symbols} "
                             "symbols a practice encoding with fresh_distinct uses once each")
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) is above max_len ({self.max_len})")
        if self.repeat_min_len > self.repeat_max_len:
            raise ValueError(f"repeat_min_len ({self.repeat_min_len}) is above repeat_max_len ({self.repeat_max_len})")
        if self.n_repeats and self.repeat_max_len > self.n_practice_codes:
            raise ValueError(f"repeat_max_len ({self.repeat_max_len}) exceeds the {self.n_practice_codes} practice "
                             "code words a drill draws from without repeats")
        if (self.real_code_drills and not self.n_repeats) or (self.real_code_episodes and not self.n_fresh_episodes):
            raise ValueError("real_code_drills needs n_repeats and real_code_episodes n_fresh_episodes")
        if self.real_code_drill_pool == "used" and self.real_code_episodes:
            raise ValueError("real_code_drill_pool 'used' keeps latent code words out of practice: it cannot go "
                             "with real_code_episodes, whose episodes rebind over all real code words")
        if self.real_code_episodes and self.n_codebooks * self.n_symbols < self.n_symbols * 2:
            raise ValueError("real_code_episodes needs at least two codebooks' code words")
        if self.distractor_words == "same" and not self.practice_distractors:
            raise ValueError("distractor_words 'same' needs practice_distractors")
        if self.practice_distractors and (not self.n_fresh_episodes or self.n_practice_books < 2):
            raise ValueError("practice_distractors needs n_fresh_episodes and at least two practice codebooks")
        if self.real_name_episodes and not self.n_fresh_episodes:
            raise ValueError("real_name_episodes needs n_fresh_episodes (practice code words)")
        if self.known_name_questions and self.n_codebooks < 2:
            raise ValueError("known_name_questions needs at least two codebooks (another's code words)")
        if self.rebind_practice and not (self.n_fresh_episodes or self.n_repeats):
            raise ValueError("rebind_practice needs practice to rebind: set n_fresh_episodes or n_repeats")
        return self


def defines(book: str, sym: str, code: str) -> Fact:
    return Fact(book, f"defines {sym} as", code)


def encodes(book: str, sym: str, code: str) -> Fact:
    return Fact(book, f"encodes {sym} as", code)


def definition_text(book: str, pairs: list[tuple[str, str]], form: str = "code_first") -> str:
    if form == "code_first":
        return f"codebook {book} : " + " ; ".join(f"{c} = {s}" for s, c in pairs) + " ."
    return f"codebook {book} : " + " ; ".join(f"{s} = {c}" for s, c in pairs) + " ."


def sequence_text(book: str, syms: list[str], codes: list[str], form: str = "aligned") -> str:
    if form == "interleaved":
        return f"encode with {book} : " + " ; ".join(f"{s} -> {c}" for s, c in zip(syms, codes))
    return f"encode with {book} : {' '.join(syms)} -> {' '.join(codes)}"


def query_text(book: str, syms: list[str], prefix: list[str], form: str = "aligned") -> str:
    """An encoding up to the code of its last symbol (``prefix``: the codes before it): the whole
    encoding with that code cut off."""
    return sequence_text(book, syms, prefix + ["?"], form).rsplit(" ", 1)[0]


def generate(config: CodebookConfig, seed: int) -> Dataset:
    # every random stream is drawn in the order it always was: the same seed, byte-identical files
    rng = random.Random(f"codebook-{seed}")
    words = NonsenseWords(seed, namespace="codebook", distinct_prefix_len=3, part=config.vocabulary)
    alphabet = list(string.ascii_lowercase[: config.n_symbols])
    if config.code_words == "shared":
        books, maps, used = _shared_codebooks(config, words, alphabet, seed)
    else:
        books, maps = _codebooks(config, words, alphabet)
        used = {b: sorted(rng.sample(alphabet, config.n_used)) for b in books}
    latent: dict[str, list[str]] = {b: [s for s in alphabet if s not in used[b]] for b in books}
    drng = random.Random(f"codebook-{seed}-definition-order")
    docs, def_ids, canonical_def = _definitions(config, books, maps, rng, drng)
    trained_seqs = _sequences(config, books, maps, used, canonical_def, rng, drng, docs, def_ids)
    real_codes = list(dict.fromkeys(c for b in books for c in maps[b].values()))  # shared: each word once
    drilled_codes = real_codes if config.real_code_drill_pool == "all" else \
        list(dict.fromkeys(maps[b][x] for b in books for x in maps[b] if x in used[b]))
    practice_books, practice_codes, fresh_knowledge = _fresh_episodes(config, seed, words, alphabet, docs, real_codes,
                                                                      books)
    docs += repeat_documents(config.n_repeats, random.Random(f"codebook-{seed}-repeats"),
                             _drill_pool(config, seed, practice_codes + (alphabet if config.drill_symbols else []),
                                         drilled_codes),
                             config.repeat_min_len, config.repeat_max_len, config.repeat_reversed, "cb-drill-")
    if config.targets:
        for d in docs:
            d.meta["targets"] = document_targets(d)
    if config.drill_symbol_targets != "always":  # symbols in a drill: keys only (after the curriculum)
        symbols = set(alphabet)
        key = "targets" if config.drill_symbol_targets == "never" else "late_targets"
        for d in docs:
            if d.kind == "repeat" and "targets" in d.meta:
                words_of = d.text.split()
                keys_only = [i for i in d.meta["targets"] if words_of[i] not in symbols]
                if key == "targets" or keys_only != d.meta["targets"]:
                    d.meta[key] = keys_only
    questions = _questions(config, seed, books, maps, used, latent, def_ids, canonical_def, trained_seqs)
    if config.practice_questions:
        fresh_knowledge |= _practice_questions(config, seed, words, alphabet, practice_codes, questions)
    if config.known_name_questions:
        krng = random.Random(f"codebook-{seed}-known-name-questions")
        named = [krng.choice(books) for _ in range(config.known_name_questions)]
        # a real name's new mapping is not knowledge (it contradicts the real one, and the questions of a
        # name contradict each other): these questions carry no facts, only their context's reading.
        # Its code words are other real codebooks' (never the name's own, which memory would answer):
        # the rung asks what a retrieved real definition needs, copying a real code word from context
        for b in named:
            if config.code_words == "shared":  # every real code word is the name's own: a new mapping of
                # them in which no option stands for the asked symbol as in the name's real mapping
                _reading_questions(config, krng, [b], alphabet, real_codes, questions, "known_name_in_context",
                                   with_facts=False, avoid=maps[b])
                continue
            others = [c for c in real_codes if c not in maps[b].values()]
            _reading_questions(config, krng, [b], alphabet, others, questions, "known_name_in_context",
                               with_facts=False)
    knowledge = sorted({f for b in books for s, c in maps[b].items() for f in (defines(b, s, c), encodes(b, s, c))}
                       | fresh_knowledge)
    ladder = {**({"practice_in_context": 0.9} if config.practice_questions else {}),
              **({"known_name_in_context": 0.9} if config.known_name_questions else {})}
    pools = [p for p in (practice_books, practice_codes) if p] if config.rebind_practice else []
    if config.rebind_practice and (config.real_code_drills or config.real_code_episodes):
        # only documents marked fresh are rebound: real definitions stay as they are (drills among the
        # words they may copy; real-code episodes among all real code words)
        pools.append(drilled_codes if not config.real_code_episodes else real_codes)
    if config.rebind_practice and config.real_name_episodes:
        pools.append(list(books))  # a real name in a practice episode is rebound among the real names
    return Dataset(
        family="codebook", config=config.model_dump(), seed=seed, documents=docs, questions=questions,
        knowledge=knowledge,
        meta={"recall_splits": RECALL_SPLITS,
              # the calibration ladder: reading a never-trained codebook's definition (gates retrieval)
              **({"calibration_splits": ladder} if ladder else {}),
              "entities": books + real_codes + practice_books + practice_codes,
              "codebooks": {b: {"map": maps[b], "used": used[b], "latent": latent[b]} for b in books},
              # training may give documents marked fresh (practice episodes, drills) new practice words
              **({"rebind_pools": pools} if pools else {}),
              "vocabulary": sorted({t for d in docs for t in d.text.split()} | {t for p in pools for t in p})})


def document_targets(doc: Document) -> list[int]:
    """The word positions of ``doc`` that carry the loss under ``loss: targets``: an encoding's code words
    after "->" (the codebook and the symbols determine them); in a definition of a real codebook the word
    after each "=" (determined by the parameters), not in a practice episode's (a random mapping each
    time: nothing to learn there); a drill keeps its own."""
    if "targets" in doc.meta:
        return list(doc.meta["targets"])
    words = doc.text.split()
    out = [] if doc.meta.get("fresh") else [i + 1 for i, w in enumerate(words) if w == "="]
    if words.count("->") > 1:  # interleaved: each code right after its symbol's arrow
        out += [i + 1 for i, w in enumerate(words) if w == "->"]
    elif "->" in words:
        out += range(words.index("->") + 1, len(words))
    return out


def _codebooks(config: CodebookConfig, words: NonsenseWords,
               alphabet: list[str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The codebooks' names and their mappings (symbol -> code word)."""
    try:
        books = words.take(config.n_codebooks)
        maps = {b: dict(zip(alphabet, words.take(config.n_symbols))) for b in books}
    except RuntimeError as e:  # the word stream is finite (distinct prefixes)
        raise DataError(f"codebook: bad setting 'n_codebooks': {config.n_codebooks} codebooks of {config.n_symbols} "
                        f"code words need more nonsense words than there are ({e})") from None
    return books, maps


def _shared_codebooks(config: CodebookConfig, words: NonsenseWords, alphabet: list[str],
                      seed: int) -> tuple[list[str], dict[str, dict[str, str]], dict[str, list[str]]]:
    """``code_words: shared``: the codebooks' names, their mappings onto one set of ``n_symbols`` code
    words, rows of random Latin squares (each block of ``n_symbols`` codebooks maps every symbol to a
    different code word), and the used symbols: those whose code word is one of ``n_used`` used code
    words. A latent mapping's code word is then a latent code word, never the output of any training
    sequence, and it stands for each symbol in one codebook of a block, where that mapping is latent."""
    try:
        books = words.take(config.n_codebooks)
        codes = words.take(config.n_symbols)
    except RuntimeError as e:  # the word stream is finite (distinct prefixes)
        raise DataError(f"codebook: bad setting 'n_codebooks': {config.n_codebooks} codebooks need more nonsense "
                        f"words than there are ({e})") from None
    rng = random.Random(f"codebook-{seed}-shared-codes")
    n = config.n_symbols
    rows: list[list[int]] = []
    for i in range(config.n_codebooks):
        block = rows[i - i % n:]  # this block's rows so far
        rows.append(_latin_row(n, [set(r[j] for r in block) for j in range(n)], rng))
    used_codes = set(rng.sample(codes, config.n_used))
    maps = {b: {alphabet[j]: codes[row[j]] for j in range(n)} for b, row in zip(books, rows)}
    used = {b: sorted(x for x in alphabet if maps[b][x] in used_codes) for b in books}
    return books, maps, used


def _latin_row(n: int, taken: list[set[int]], rng: random.Random) -> list[int]:
    """A random permutation of range(n) whose j-th entry is not in ``taken[j]`` (the column's entries in
    the rows above): a perfect matching of columns to values, found by augmenting paths tried in random
    order. One exists for every Latin rectangle (Hall's theorem: the graph is regular)."""
    allowed = [[v for v in range(n) if v not in taken[j]] for j in range(n)]
    for a in allowed:
        rng.shuffle(a)
    owner: dict[int, int] = {}

    def augment(j: int, seen: set[int]) -> bool:
        for v in allowed[j]:
            if v in seen:
                continue
            seen.add(v)
            if v not in owner or augment(owner[v], seen):
                owner[v] = j
                return True
        return False

    order = list(range(n))
    rng.shuffle(order)
    for j in order:
        if not augment(j, set()):
            raise AssertionError("no Latin row: the rows above are not a Latin rectangle")
    row = [0] * n
    for v, j in owner.items():
        row[j] = v
    return row


def _definitions(config: CodebookConfig, books: list[str], maps: dict[str, dict[str, str]], rng: random.Random,
                 drng: random.Random) -> tuple[list[Document], dict[str, list[str]], dict[str, str]]:
    """(standalone definition documents, the support documents per codebook so far, each codebook's
    canonical definition text)."""
    docs: list[Document] = []
    def_ids: dict[str, list[str]] = {b: [] for b in books}
    canonical_def: dict[str, str] = {}
    for b in books:
        for k in range(config.definition_copies):
            pairs = list(maps[b].items())
            if k:
                rng.shuffle(pairs)
            elif config.shuffle_definitions:  # own stream: the seed's documents stay as they were without
                drng.shuffle(pairs)
            text = definition_text(b, pairs, config.definition_form)
            canonical_def.setdefault(b, text)
            if not config.standalone_definitions:
                break
            did = f"cb-def-{b}-{k}"
            def_ids[b].append(did)
            docs.append(Document(id=did, text=text, kind="definition",
                                 facts=sorted(defines(b, s, c) for s, c in pairs), meta={"codebook": b}))
    return docs, def_ids, canonical_def


def _sequences(config: CodebookConfig, books: list[str], maps: dict[str, dict[str, str]], used: dict[str, list[str]],
               canonical_def: dict[str, str], rng: random.Random, drng: random.Random, docs: list[Document],
               def_ids: dict[str, list[str]]) -> set[tuple[str, tuple[str, ...]]]:
    """Training sequences over used symbols, appended to ``docs`` (the question sequences are kept apart
    from the returned ones); an episode that holds the definition is support when definitions are not
    standalone."""
    trained_seqs: set[tuple[str, tuple[str, ...]]] = set()
    for b in books:
        for k in range(config.sequences_per_codebook):
            n = rng.randint(config.min_len, config.max_len)
            syms = [rng.choice(used[b]) for _ in range(n)]
            trained_seqs.add((b, tuple(syms)))
            codes = [maps[b][s] for s in syms]
            text = sequence_text(b, syms, codes, config.encoding_form)
            facts = sorted({encodes(b, s, maps[b][s]) for s in syms})
            with_def = rng.random() < config.p_definition_in_sequence
            if with_def:
                if config.shuffle_definitions:
                    pairs = list(maps[b].items())
                    drng.shuffle(pairs)
                    text = definition_text(b, pairs, config.definition_form) + "\n" + text
                else:
                    text = canonical_def[b] + "\n" + text
                facts = sorted(set(facts) | {defines(b, s, c) for s, c in maps[b].items()})
            docs.append(Document(id=f"cb-seq-{b}-{k:04d}", text=text, kind="sequence", facts=facts,
                                 meta={"codebook": b, "with_definition": with_def}))
            if with_def and not config.standalone_definitions:
                def_ids[b].append(docs[-1].id)  # the episodes that hold the definition are the support
        if not def_ids[b]:
            raise DataError(f"codebook: no training episode defines codebook {b}: raise p_definition_in_sequence "
                            "or sequences_per_codebook, or set standalone_definitions")
    return trained_seqs


def _drill_pool(config: CodebookConfig, seed: int, practice_codes: list[str], real_codes: list[str]) -> Any:
    """The drills' word pool: the practice code words (with ``drill_symbols`` the input symbols too), or for
    a ``real_code_drills`` share (drawn from a stream of its own, so the default leaves every drill as it
    was) the real codebooks' code words."""
    if not config.real_code_drills:
        return practice_codes
    prng = random.Random(f"codebook-{seed}-drill-pools")

    def choose(_rng: random.Random) -> tuple[list[str], dict[str, Any]]:
        if prng.random() < config.real_code_drills:
            return real_codes, {"real_words": True}
        return practice_codes, {}
    return choose


def _fresh_episodes(config: CodebookConfig, seed: int, words: NonsenseWords, alphabet: list[str],
                    docs: list[Document], real_codes: list[str],
                    books: list[str]) -> tuple[list[str], list[str], set[Fact]]:
    """Fresh episodes, appended to ``docs``: a practice codebook with a new random mapping in every
    episode, defined and then used for any symbol, so its encoding can only be read from the definition
    in context. From their own word and random streams: the real codebooks stay the same with or
    without them. Returns (practice codebooks, practice code words, what the episodes state)."""
    practice_books = words.take(config.n_practice_books) if config.n_fresh_episodes else []
    # drills draw from the practice code words too (taken after the books: as without drills)
    practice_codes = words.take(config.n_practice_codes) if config.n_fresh_episodes or config.n_repeats else []
    frng = random.Random(f"codebook-{seed}-fresh")
    rrng = random.Random(f"codebook-{seed}-fresh-real")  # its own stream: the default leaves episodes as they were
    nrng = random.Random(f"codebook-{seed}-fresh-real-name")  # likewise
    xrng = random.Random(f"codebook-{seed}-fresh-distractor")  # likewise
    fresh_knowledge: set[Fact] = set()
    for k in range(config.n_fresh_episodes):
        b = frng.choice(practice_books)
        real = bool(config.real_code_episodes) and rrng.random() < config.real_code_episodes
        named = bool(config.real_name_episodes) and nrng.random() < config.real_name_episodes
        if named:  # a known codebook's name over a new mapping (its practice words, never a real code word)
            b, real = nrng.choice(books), False
        pairs = list(zip(alphabet, frng.sample(real_codes if real else practice_codes, config.n_symbols)))
        m = dict(pairs)
        frng.shuffle(pairs)
        n = frng.randint(config.fresh_min_len or config.min_len, config.fresh_max_len or config.max_len)
        syms = frng.sample(alphabet, n) if config.fresh_distinct else [frng.choice(alphabet) for _ in range(n)]
        definitions = [definition_text(b, pairs, config.definition_form)]
        facts = sorted({defines(b, s, c) for s, c in pairs} | {encodes(b, x, m[x]) for x in syms})
        if config.practice_distractors and xrng.random() < config.practice_distractors:
            other = xrng.choice([x for x in practice_books if x != b])
            other_pairs = list(zip(alphabet, xrng.sample(practice_codes, config.n_symbols)
                                   if config.distractor_words == "own" else xrng.sample(list(m.values()), len(m))))
            definitions.insert(xrng.randrange(2), definition_text(other, other_pairs, config.definition_form))
            facts = sorted(set(facts) | {defines(other, s, c) for s, c in other_pairs})
        text = "\n".join(definitions) + "\n" + sequence_text(b, syms, [m[x] for x in syms], config.encoding_form)
        if not named:  # a known name's new mapping contradicts its real one: not knowledge
            fresh_knowledge.update(facts)
        docs.append(Document(id=f"cb-fresh-{k:05d}", text=text, kind="sequence", facts=facts,
                             meta={"codebook": b, "with_definition": True, "fresh": True,
                                   **({"real_words": True} if real or named else {}),
                                   **({"real_name": True} if named else {})}))
    return practice_books, practice_codes, fresh_knowledge


def _questions(config: CodebookConfig, seed: int, books: list[str], maps: dict[str, dict[str, str]],
               used: dict[str, list[str]], latent: dict[str, list[str]], def_ids: dict[str, list[str]],
               canonical_def: dict[str, str], trained_seqs: set[tuple[str, tuple[str, ...]]]) -> list[Question]:
    """Encode the last symbol of a sequence, for used (seen) and never-used (latent) symbols, each with
    and without the definition in context; one random stream per split."""
    questions: list[Question] = []
    for split, pool_of, in_context in (("seen", used, False), ("latent", latent, False),
                                       ("seen_in_context", used, True), ("latent_in_context", latent, True)):
        qrng = random.Random(f"codebook-{seed}-{split}")
        for b in books:
            asked: set[tuple[str, ...]] = set()
            for _ in range(config.questions_per_codebook):
                picked = _question_sequence(config, qrng, b, pool_of[b], used[b], trained_seqs, asked)
                if picked is None:  # a tiny alphabet can run out of new sequences: ask fewer questions
                    break
                target, wrong, syms = picked
                asked.add(syms)
                prefix = [maps[b][s] for s in syms[:-1]]
                query = query_text(b, list(syms), prefix, config.encoding_form)
                context = canonical_def[b] + "\n" + query if in_context else query
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
    return questions


def _question_sequence(config: CodebookConfig, qrng: random.Random, b: str, pool: list[str], used: list[str],
                       trained_seqs: set[tuple[str, tuple[str, ...]]], asked: set[tuple[str, ...]]
                       ) -> tuple[str, list[str], tuple[str, ...]] | None:
    """(target symbol, wrong options, the sequence ending in the target) of a new question, or None when
    100 draws found no sequence that is neither trained nor asked already."""
    for _try in range(100):
        target = qrng.choice(pool)
        # wrong options and the target never appear earlier in the sequence: a code word
        # in the prefix would be an option a model can rule out by overlap alone
        wrong = qrng.sample([s for s in pool if s != target], config.n_choices - 1)
        n = qrng.randint(config.min_len, config.max_len)
        others = [s for s in used if s != target and s not in wrong]
        syms = tuple([qrng.choice(others) for _ in range(n - 1)] + [target])
        if (b, syms) not in trained_seqs and syms not in asked:
            return target, wrong, syms
    return None


def _practice_questions(config: CodebookConfig, seed: int, words: NonsenseWords, alphabet: list[str],
                        codes: list[str], questions: list[Question]) -> set[Fact]:
    """``practice_in_context``: a new codebook (a name of its own, a random mapping over the practice
    code words) defined in the context, then a latent-style question about it. Nothing about it is in
    training, so only reading the definition answers it: in-context reading apart from the real
    codebooks, the skill the practice episodes train. No training document holds it, so an oracle
    context is the question's own."""
    if not codes:
        raise DataError("codebook: bad setting 'practice_questions': it needs practice episodes (n_fresh_episodes)")
    try:
        books = words.take(config.practice_questions)
    except RuntimeError as e:
        raise DataError(f"codebook: bad setting 'practice_questions': {config.practice_questions} need more "
                        f"nonsense words than there are ({e})") from None
    return _reading_questions(config, random.Random(f"codebook-{seed}-practice-questions"), books, alphabet, codes,
                              questions, "practice_in_context")


def _reading_questions(config: CodebookConfig, rng: random.Random, books: list[str], alphabet: list[str],
                       codes: list[str], questions: list[Question], split: str, with_facts: bool = True,
                       avoid: dict[str, str] | None = None) -> set[Fact]:
    """One question of ``split`` per name in ``books``: the name defined in the context with a random
    mapping over ``codes``, then a latent-style question about it (appended to ``questions``);
    returns what the definitions state (``with_facts=False``: nothing, and the questions have no
    choice facts). ``avoid`` (a mapping the parameters know for the name): no option is the code word
    it gives the asked symbol, so memory cannot answer."""
    knowledge: set[Fact] = set()
    for b in books:
        while True:
            m = dict(zip(alphabet, rng.sample(codes, config.n_symbols)))
            pairs = list(m.items())
            rng.shuffle(pairs)
            target = rng.choice(alphabet)
            wrong = rng.sample([s for s in alphabet if s != target], config.n_choices - 1)
            if avoid is None or avoid[target] not in {m[x] for x in [target] + wrong}:
                break
        others = [s for s in alphabet if s != target and s not in wrong]
        syms = [rng.choice(others) for _ in range(rng.randint(config.min_len, config.max_len) - 1)] + [target]
        prefix = [m[s] for s in syms[:-1]]
        query = query_text(b, syms, prefix, config.encoding_form)
        options = [target] + wrong
        rng.shuffle(options)
        if with_facts:
            knowledge.update(f for s, c in m.items() for f in (defines(b, s, c), encodes(b, s, c)))
        questions.append(Question(
            id=f"cb-{split}-{len(questions):05d}", split=split, subtype=b,
            context=definition_text(b, pairs, config.definition_form) + "\n" + query,
            choices=[" " + m[s] for s in options], answer=options.index(target), support=[], premises=[],
            choice_facts=[encodes(b, target, m[s]) for s in options] if with_facts else [],
            meta={"codebook": b, "symbol": target, "sequence": syms, "latent": True, "in_context": True,
                  "practice": True}))
    return knowledge


_DEF = re.compile(r"codebook (\S+) : ((?:\S+ = \S+(?: ; )?)+) \.")
_SYMBOL = re.compile(r"[a-z]")  # input symbols are single letters; code words are longer
_SEQ = re.compile(r"encode with (\S+) : ((?:\S+ )*\S+) -> ((?:\S+ )*\S+)")
_SEQ_INTERLEAVED = re.compile(r"encode with (\S+) : (\S+ -> \S+(?: ; \S+ -> \S+)*)")


def parse_statements(text: str) -> list[Fact]:
    """Definitions -> ``defines`` facts; complete encodings -> ``encodes`` facts (one per symbol)."""
    facts: list[Fact] = []
    for line in text.splitlines():
        line = line.strip()
        if m := _DEF.fullmatch(line):
            for pair in m.group(2).split(" ; "):
                s, c = pair.split(" = ")
                if not _SYMBOL.fullmatch(s):  # code_first form
                    s, c = c, s
                facts.append(defines(m.group(1), s, c))
        elif m := _SEQ_INTERLEAVED.fullmatch(line):
            pairs = [p.split(" -> ") for p in m.group(2).split(" ; ")]
            facts.extend(encodes(m.group(1), s, c) for s, c in pairs)
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
                out.append(Document(id=f"cb-aug-{b}-{s}-{made}", text=sequence_text(b, syms, [m[x] for x in syms],
                                                                                  cfg.encoding_form),
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
