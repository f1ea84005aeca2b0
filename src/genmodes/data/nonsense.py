"""Nonsense words: the entities of every dataset, so pretraining knowledge cannot help [P1, P2].

Words are 4-5 letters, built from English phonotactics (onset + nucleus + coda, optionally two
syllables), and never an English word: each is checked against the web2 and GCIDE word lists shipped
with the ``english-words`` package (262k words). A :class:`NonsenseWords` generator never repeats a
word, so a dataset that draws all its entities from one generator has no duplicates. Each family draws
from its own stream (``namespace``, usually the family's name): two families generated with the same
seed share no entity by accident, so a study that trains on one family and tests on another does not
test on words it trained [issue: separate vocabularies per family].
"""

from __future__ import annotations

import functools
import hashlib
import random

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
    choose by the prefix alone).
    """

    def __init__(self, seed: int, *, namespace: str, exclude: set[str] | None = None,
                 distinct_prefix_len: int = 0):
        if not namespace:
            raise ValueError("NonsenseWords needs a namespace (the family's name): one vocabulary per family")
        self._rng = random.Random(f"nonsense-{namespace}-{seed}")
        self._bucket = bucket_of(namespace)
        self._used: set[str] = set(exclude or ())
        self._prefixes: set[str] = set()
        self._prefix_len = distinct_prefix_len

    @property
    def used(self) -> frozenset[str]:
        return frozenset(self._used)

    def next(self) -> str:
        for _ in range(100_000):
            w = _candidate(self._rng)
            if w in self._used or _word_bucket(w) != self._bucket or not is_valid_nonsense(w):
                continue
            if self._prefix_len:
                p = w[: self._prefix_len]
                if p in self._prefixes:
                    continue
                self._prefixes.add(p)
            self._used.add(w)
            return w
        raise RuntimeError("ran out of nonsense words: ask for fewer entities or a shorter distinct prefix")

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


def capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]
