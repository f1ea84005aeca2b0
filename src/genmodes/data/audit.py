"""Dataset audit: leak and validity checks every generated or imported dataset must pass.

A held-out question is only a test of generalization if its answer was never trained [P1, P2], and
only a fair test if it has one right answer and its premises were trained. The checks:

(a) held-out splits (all but ``ds.meta["recall_splits"]``): the correct statement
    (``q.answer_text``, whitespace- and case-normalized) occurs in no training document, and the
    answer fact is in no document's ``facts``;
(b) every ``q.support`` id is a document, and those documents' facts contain every ``q.premises`` fact;
(c) where ``choice_facts`` are given: exactly one choice's fact is in ``knowledge``, the answer's;
(d) ``meta["hard_distractors"]``: every wrong choice (s, r, o) has some (s2, r, o) in knowledge,
    s2 != s, so word co-occurrence alone cannot pick the answer;
(e) no duplicate document/question ids; entities (``ds.meta["entities"]``) distinct and not English;
(f) no held-out split is answered by a shortcut baseline (:mod:`genmodes.data.baselines`: answer
    position, length, overlap, co-occurrence, frequency, bigram, answer form) beyond chance + 10
    points, except the shortcuts a family declares by design (co-occurrence on reversals);
(g) reworded leaks: the family's statement parser reads every training document, and a held-out
    answer fact stated in any trained wording is a leak (not only exact copies and declared facts).

Everything is sets and dicts; the text check narrows candidates through a word index before a
substring test, so 20k documents audit in about a second.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from genmodes.data.nonsense import is_english
from genmodes.data.types import Dataset

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


@dataclass
class SplitRow:
    split: str
    n: int
    chance: float
    n_subtypes: int
    recall: bool
    violations: int = 0


@dataclass
class AuditReport:
    violations: list[str] = field(default_factory=list)
    rows: list[SplitRow] = field(default_factory=list)
    baselines: list = field(default_factory=list)  # BaselineRow per split x method

    @property
    def ok(self) -> bool:
        return not self.violations


class _TextIndex:
    """Finds whether a normalized string occurs in any document, without scanning them all.

    Texts are normalized to single spaces, so a needle's interior words are whole space-delimited
    tokens of any text containing it: the documents holding its rarest interior word are the only
    candidates for a substring test.
    """

    def __init__(self, texts: list[str]):
        self.texts = [normalize(t) for t in texts]
        self.by_word: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(self.texts):
            for w in set(t.split(" ")):
                self.by_word[w].append(i)
        self._joined: str | None = None

    def find(self, needle: str) -> int | None:
        """Index of a text containing ``needle`` (already normalized), or None."""
        words = needle.split(" ")
        interior = words[1:-1]
        if interior:
            w = min(interior, key=lambda x: len(self.by_word.get(x, ())))
            cands = self.by_word.get(w, ())
            if len(cands) * 8 < len(self.texts):
                for i in cands:
                    if needle in self.texts[i]:
                        return i
                return None
        # common words only: one C-level scan of everything beats a Python loop over most documents
        if self._joined is None:
            self._joined = "\0".join(self.texts)
        pos = self._joined.find(needle)
        return None if pos < 0 else self._joined.count("\0", 0, pos)


class _Findings:
    """Violations in the order found, counted per split."""

    def __init__(self, rep: AuditReport):
        self.rep = rep
        self.per_split: Counter[str] = Counter()

    def bad(self, msg: str, split: str | None = None) -> None:
        self.rep.violations.append(msg)
        if split is not None:
            self.per_split[split] += 1


def audit_dataset(ds: Dataset, baselines: bool = True) -> AuditReport:
    """Run checks (a)-(g); returns every violation (one line each) and a per-split table.

    ``baselines=False`` skips (f), the shortcut baselines (the leak checks alone are cheaper).
    """
    rep = AuditReport()
    found = _Findings(rep)
    recall = set(ds.meta.get("recall_splits", []))
    _check_ids(ds, recall, found)
    _check_questions(ds, recall, found)
    _check_reworded_leaks(ds, recall, found)
    # (f) shortcut baselines
    if baselines and ds.questions:
        from genmodes.data.baselines import evaluate, offences

        rep.baselines = evaluate(ds)
        for line in offences(rep.baselines):
            found.bad(line, line.split(":", 1)[0])
    for s in ds.splits:
        qs = ds.split(s)
        rep.rows.append(SplitRow(split=s, n=len(qs), chance=ds.chance(s),
                                 n_subtypes=len({q.subtype for q in qs}), recall=s in recall,
                                 violations=found.per_split[s]))
    return rep


def _check_ids(ds: Dataset, recall: set[str], found: _Findings) -> None:
    """(e) unique ids and entities, no English word as an entity, recall splits that exist."""
    for kind, ids in (("document", [d.id for d in ds.documents]), ("question", [q.id for q in ds.questions])):
        for x, c in Counter(ids).items():
            if c > 1:
                found.bad(f"duplicate {kind} id {x!r} ({c} times)")
    entities = ds.meta.get("entities")
    if entities is not None:
        for x, c in Counter(entities).items():
            if c > 1:
                found.bad(f"duplicate entity {x!r} ({c} times)")
        for x in sorted(set(entities)):
            for part in str(x).split():
                if is_english(part):
                    found.bad(f"entity {x!r} is an English word ({part!r})")
    for s in sorted(recall - set(ds.splits)):
        found.bad(f"recall split {s!r} listed in meta has no questions")


class _Corpus:
    """What the per-question checks look up: documents, their facts, the knowledge and who holds what."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        self.docs = ds.doc_index()
        self.doc_facts = {f for d in ds.documents for f in d.facts}
        self.knowledge = set(ds.knowledge)
        # (d) needs, per (relation, object), the subjects that hold it
        self.holders: dict[tuple[str, str], set[str]] = defaultdict(set)
        for f in self.knowledge:
            self.holders[(f.relation, f.object)].add(f.subject)
        self._index: _TextIndex | None = None

    @property
    def index(self) -> _TextIndex:
        if self._index is None:
            self._index = _TextIndex([d.text for d in self.ds.documents])
        return self._index


def _check_questions(ds: Dataset, recall: set[str], found: _Findings) -> None:
    corpus = _Corpus(ds)
    for q in ds.questions:
        _check_question(q, q.split not in recall, corpus, found)


def _check_question(q: Any, held_out: bool, corpus: _Corpus, found: _Findings) -> None:
    """(a) leaks, (b) support, (c) one true choice, (d) hard distractors, and no duplicate choice."""
    where = f"{q.split} {q.id}"
    cf = q.choice_facts
    if held_out:
        hit = corpus.index.find(normalize(q.answer_text))
        if hit is not None:
            found.bad(f"{where}: answer text {q.answer_text.strip()!r} appears in document "
                      f"{corpus.ds.documents[hit].id}", q.split)
        if cf and cf[q.answer] is not None and cf[q.answer] in corpus.doc_facts:
            found.bad(f"{where}: answer fact {cf[q.answer].to_list()} is stated by a training document", q.split)
    have = set()
    for sid in q.support:
        d = corpus.docs.get(sid)
        if d is None:
            found.bad(f"{where}: support document {sid!r} does not exist", q.split)
        else:
            have.update(d.facts)
    for p in q.premises:
        if p not in have:
            found.bad(f"{where}: premise {p.to_list()} is not stated by its support documents", q.split)
    if cf:
        if len(cf) != len(q.choices):
            found.bad(f"{where}: {len(cf)} choice_facts for {len(q.choices)} choices", q.split)
            return
        true_ix = [i for i, f in enumerate(cf) if f is not None and f in corpus.knowledge]
        if true_ix != [q.answer]:
            found.bad(f"{where}: choices {true_ix} are true in knowledge, expected only the answer {q.answer}",
                      q.split)
    if q.meta.get("hard_distractors"):
        if not cf:
            found.bad(f"{where}: hard_distractors without choice_facts", q.split)
        for i, f in enumerate(cf):
            if i == q.answer or f is None:
                continue
            if not (corpus.holders.get((f.relation, f.object), set()) - {f.subject}):
                found.bad(f"{where}: choice {i} {f.to_list()} is not a hard distractor (no other subject "
                          f"holds {f.relation!r} {f.object!r})", q.split)
    # duplicate choices make the question ambiguous however it is scored
    if len(set(q.choices)) != len(q.choices):
        found.bad(f"{where}: duplicate choices", q.split)


def _check_reworded_leaks(ds: Dataset, recall: set[str], found: _Findings) -> None:
    """(g) a held-out answer fact stated by a document in any wording the family parses."""
    parse = _parser(ds.family)
    if parse is None:
        return
    answers: dict = {}
    for q in ds.questions:
        if q.split not in recall and q.choice_facts and q.choice_facts[q.answer] is not None:
            answers.setdefault(q.choice_facts[q.answer], q)
    if not answers:
        return
    reported = set()
    for d in ds.documents:
        for f in parse(d.text):
            q = answers.get(f)
            if q is not None and f not in reported and f not in d.facts:
                reported.add(f)
                found.bad(f"{q.split} {q.id}: answer fact {f.to_list()} is stated (reworded) by document "
                          f"{d.id}: {d.text.strip()[:80]!r}", q.split)


def _parser(family: str):
    from genmodes.data.families import FAMILY_MODULES, get_family

    if family not in FAMILY_MODULES:
        return None
    return get_family(family).parse_statements


def print_report(rep: AuditReport, title: str = "", max_violations: int = 20) -> None:
    """The per-split table and the first violations, with rich."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=title or None)
    for col, just in (("split", "left"), ("kind", "left"), ("n", "right"), ("chance", "right"),
                      ("subtypes", "right"), ("violations", "right")):
        t.add_column(col, justify=just)
    for r in rep.rows:
        t.add_row(r.split, "recall" if r.recall else "held-out", str(r.n), f"{r.chance:.3f}",
                  str(r.n_subtypes), str(r.violations) if r.violations else "0")
    con.print(t)
    if rep.baselines:
        from genmodes.data.baselines import print_table

        print_table(rep.baselines)
    if rep.violations:
        con.print(f"[bold red]{len(rep.violations)} violation(s)[/]; first {min(max_violations, len(rep.violations))}:",
                  highlight=False)
        for v in rep.violations[:max_violations]:
            con.print(f"  - {v}", highlight=False, markup=False)
    else:
        con.print("[green]audit passed[/]: no violations")
