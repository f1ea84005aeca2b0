"""Nonsense words: the entities of every dataset, so pretraining knowledge cannot help [P1, P2].

Words are 4-5 letters, built from English phonotactics (onset + nucleus + coda, optionally two
syllables), and never an English word: each is checked against the web2 and GCIDE word lists shipped
with the ``english-words`` package (262k words). A :class:`NonsenseWords` generator never repeats a
word, so a dataset that draws all its entities from one generator has no duplicates. Each family draws
from its own stream (``namespace``, usually the family's name): two families generated with the same
seed share no entity by accident, so a study that trains on one family and tests on another does not
test on words it trained [issue: separate vocabularies per family].

Within a family, datasets generated with different seeds draw from the same share of the word space,
so they can share words by chance. A :class:`VocabularyPart` (a dataset's ``vocabulary: {part, of}``
setting) splits a family's vocabulary into ``of`` disjoint parts by a hash of each word, independent
of the family hash; datasets declared with different parts share no entity whatever their seeds, the
setting for a study that trains on one dataset and tests transfer to another of the same family
[P3, issue 11 "Transfer by design"]. Families also pass any other vocabulary they draw (descriptions,
synthetic tokens) through :meth:`VocabularyPart.holds`, the one filter.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genmodes.errors import DataError

# Onsets, nuclei and codas that English allows; chosen so every combination is pronounceable.
ONSETS = ["b", "bl", "br", "ch", "d", "dr", "f", "fl", "fr", "g", "gl", "gr", "h", "j", "k", "kl", "kr",
          "l", "m", "n", "p", "pl", "pr", "r", "s", "sk", "sl", "sm", "sn", "sp", "st", "t", "tr", "v",
          "w", "y", "z", "th", "sh"]
NUCLEI = ["a", "e", "i", "o", "u", "oo", "ee", "ai", "oa", "ou"]
CODAS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "t", "x", "ff", "mp", "nd", "nk", "nt", "sk",
         "st", "rt", "lk", "ld", "rn", "rp", "sp", "zz", "ck"]
# Second-syllable shapes for two-syllable words ("dava", "mipo").
SHORT_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
SHORT_NUCLEI = ["a", "e", "i", "o", "u"]


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Lower-cased English words (web2 + GCIDE lists of the english-words package)."""
    from english_words import get_english_words_set

    words = get_english_words_set(["web2", "gcide"], lower=True, alpha=True)
    return frozenset(words)


def is_english(word: str) -> bool:
    w = word.lower()
    ew = english_words()
    # Also reject plurals / verb forms of English words ("glows" from "glow"), which read as English.
    return w in ew or (w.endswith("s") and w[:-1] in ew) or (w.endswith("es") and w[:-2] in ew)


def _candidate(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)
    return rng.choice(ONSETS) + rng.choice(SHORT_NUCLEI) + rng.choice(SHORT_ONSETS) + rng.choice(SHORT_NUCLEI)


# The word space is partitioned between families (a word belongs to one bucket, by a hash of the word),
# so two datasets of different families never share an entity, whatever their seeds. Registered
# families have buckets of their own; any other namespace hashes into one.
N_BUCKETS = 6
FAMILY_BUCKETS = {"simple_reversals": 0, "simple_syllogisms": 1, "reversal_curse": 2, "reversal_curse-last": 2,
                  "semantic_structure": 3, "codebook": 4, "relations": 5}


def bucket_of(namespace: str) -> int:
    if namespace in FAMILY_BUCKETS:
        return FAMILY_BUCKETS[namespace]
    return int(hashlib.sha256(namespace.encode()).hexdigest(), 16) % N_BUCKETS


def _word_bucket(word: str) -> int:
    return int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % N_BUCKETS


class VocabularyPart(BaseModel):
    """Part ``part`` of ``of`` disjoint parts of a family's vocabulary (``{part: 0, of: 2}``, or "0/2"
    on the command line). An item (a word, a description, a synthetic token) belongs to exactly one
    part, by a salted hash of its text: independent of the family buckets, so each part keeps about
    1/of of every family's words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    part: int = Field(..., ge=0, description="which part (0 .. of-1)")
    of: int = Field(..., ge=1, description="how many disjoint parts the vocabulary is split into")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", v)
            if not m:
                raise ValueError(f"expected {{part: P, of: N}} or 'P/N', got {v!r}")
            return {"part": int(m.group(1)), "of": int(m.group(2))}
        return v

    @model_validator(mode="after")
    def _part_below_of(self) -> "VocabularyPart":
        if self.part >= self.of:
            raise ValueError(f"part {self.part} must be below of={self.of} (parts are 0 .. {self.of - 1})")
        return self

    def holds(self, item: str) -> bool:
        # salted, so the split is independent of _word_bucket's (which decides the family)
        h = int(hashlib.sha256(f"genmodes-vocabulary-part\0{item}".encode()).hexdigest()[:8], 16)
        return h % self.of == self.part

    def keep(self, items: Iterable[str]) -> list[str]:
        return [x for x in items if self.holds(x)]

    def __str__(self) -> str:
        return f"vocabulary part {self.part} of {self.of}"


class OutOfWords(DataError, RuntimeError):
    """The stream has no word left that fits (a RuntimeError as before, and a one-line user error)."""


def is_valid_nonsense(word: str) -> bool:
    return 4 <= len(word) <= 5 and word.isalpha() and word.islower() and not is_english(word)


class NonsenseWords:
    """A seeded stream of distinct nonsense words.

    >>> w = NonsenseWords(seed=0, namespace="doc")
    >>> a, b = w.take(2)          # two distinct words
    >>> w.next() not in (a, b)
    True

    ``exclude`` adds words that must not be produced (e.g. entities of another part of a dataset).
    ``avoid_prefixes`` rejects words whose first ``prefix_len`` letters equal those of an earlier word,
    which keeps the first tokenizer piece of choices apart (a shared first token would let a model
    choose by the prefix alone). ``part`` keeps only the words of one :class:`VocabularyPart`; without
    it the stream is exactly what it always was.
    """

    def __init__(self, seed: int, *, namespace: str, exclude: set[str] | None = None,
                 distinct_prefix_len: int = 0, part: VocabularyPart | None = None):
        if not namespace:
            raise ValueError("NonsenseWords needs a namespace (the family's name): one vocabulary per family")
        self._rng = random.Random(f"nonsense-{namespace}-{seed}")
        self._bucket = bucket_of(namespace)
        self._used: set[str] = set(exclude or ())
        self._prefixes: set[str] = set()
        self._prefix_len = distinct_prefix_len
        self._part = part
        self._namespace = namespace

    @property
    def used(self) -> frozenset[str]:
        return frozenset(self._used)

    def next(self) -> str:
        for _ in range(100_000):
            w = _candidate(self._rng)
            if w in self._used or _word_bucket(w) != self._bucket or not is_valid_nonsense(w):
                continue
            if self._part is not None and not self._part.holds(w):
                continue
            if self._prefix_len:
                p = w[: self._prefix_len]
                if p in self._prefixes:
                    continue
                self._prefixes.add(p)
            self._used.add(w)
            return w
        where = f" in {self._part} (about 1/{self._part.of} of the family's words)" if self._part else ""
        raise OutOfWords(f"{self._namespace}: ran out of nonsense words{where}: ask for fewer entities or a shorter distinct prefix"
                         + (", or fewer vocabulary parts" if self._part else ""))

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


def capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]
