"""Sentence splitting, the one rule that fine-tuning (``sentence_split``) and the augmentation
checker (``conditions.augment.verify``) share.

A sentence ends at a line break (titles, list lines, glossary lines), or at "." or "!" followed by
white space or the end of the text. Never at "?": in every dataset here a question mark ends a
lead-in whose answer follows on the same line ("Q: What can the dax do? A: The dax can zarp.",
Berglund et al.'s "Ever heard of Ardith Penrose? They are the inventor of ..."). Split there, the
answer sentence loses its subject: an ``independent`` fine-tuning example would state no fact, and
the checker would count the question as an unverifiable statement and the answer as another.
"""

from __future__ import annotations

import re

# lazily up to the first end: "." / "!" before white space or the end, a line break, or the end
_SENTENCE = re.compile(r"[^\n]*?(?:[.!](?=\s|$)|(?=\n)|$)")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of ``text``, without surrounding white space."""
    spans = []
    for m in _SENTENCE.finditer(text):
        s, e = m.span()
        seg = text[s:e]
        if not seg.strip():
            continue
        s += len(seg) - len(seg.lstrip())
        e -= len(seg) - len(seg.rstrip())
        spans.append((s, e))
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped."""
    return [text[s:e] for s, e in sentence_spans(text)]
