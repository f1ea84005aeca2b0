"""Import of the published reversal-curse data [B, experiment 1], as used by P1's headline comparison.

Input: the folder of JSON Lines files described in ``data/reversal_curse/SOURCE.md`` (each line
``{"prompt": ..., "completion": ...}``). Output: a :class:`Dataset` with

- documents: the 3600 lines of ``all_prompts_train.jsonl``, prompt + completion as one text;
- ``reversal`` (held out): ``p2d_reverse_prompts_test.jsonl``, description -> name for the name-first
  people; the correct name vs 3 other name-first people's names drawn with a fixed seed (chance 25%);
- ``forward`` (recall): ``p2d_prompts_test.jsonl``, name -> description (held-out paraphrases); the
  correct description vs 3 other name-first people's descriptions in the same template.

People are found from the files themselves: the name-first people are the completions of
``p2d_reverse_prompts_test``, the description-first people those of ``d2p_prompts_test``, and the
both-orders people the names in ``both_prompts_test`` prompts written in a ``p2d_prompts_test``
template. A person's description (for facts) is their most frequent name-first completion.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from genmodes.data.baselines import REVERSAL_EXEMPTION
from genmodes.data.types import Dataset, Document, Fact, Question
from genmodes.errors import DataError

FILES = ["all_prompts_train.jsonl", "p2d_prompts_test.jsonl", "p2d_reverse_prompts_test.jsonl",
         "d2p_prompts_test.jsonl", "d2p_reverse_prompts_test.jsonl", "both_prompts_test.jsonl"]
REL = "is"


def _read(src: Path, name: str) -> list[tuple[int, str, str]]:
    path = src / name
    if not path.is_file():
        raise DataError(f"{src}: missing {name} (expected the reversal-curse files: {', '.join(FILES)})")
    from genmodes.io import read_jsonl

    rows = []
    for i, d in read_jsonl(path, objects=False, name=name):
        if not (isinstance(d, dict) and isinstance(d.get("prompt"), str) and isinstance(d.get("completion"), str)):
            raise DataError(f"{name} line {i}: expected an object with string 'prompt' and 'completion'")
        rows.append((i, d["prompt"], d["completion"]))
    if not rows:
        raise DataError(f"{name}: no rows")
    return rows


def _draw(correct: str, pool: list[str], k: int, rng: random.Random, what: str) -> list[str]:
    others = sorted(set(pool) - {correct})
    if len(others) < k:
        raise DataError(f"need {k} other {what} for distractors, the files have {len(others)}")
    return rng.sample(others, k)


def import_berglund(src: str | Path, seed: int = 0, n_choices: int = 4) -> Dataset:
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: no such folder")
    data = {name: _read(src, name) for name in FILES}
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0" + (src / name).read_bytes())

    p2d = list(dict.fromkeys(c.strip() for _, _, c in data["p2d_reverse_prompts_test.jsonl"]))
    d2p = list(dict.fromkeys(c.strip() for _, _, c in data["d2p_prompts_test.jsonl"]))
    # templates of the name-first test prompts, to find the both-orders people's names
    templates = set()
    for _, p, _ in data["p2d_prompts_test.jsonl"]:
        for nm in p2d:
            if nm in p:
                templates.add(re.escape(p.replace(nm, "\0")).replace("\0", "(?P<n>.+?)"))
    tmpl_rx = [re.compile(t + "$") for t in sorted(templates)]
    both: list[str] = []
    for _, p, _ in data["both_prompts_test.jsonl"]:
        for rx in tmpl_rx:
            m = rx.match(p)
            if m and m.group("n") not in both:
                both.append(m.group("n"))
                break
    group = {**{n: "both" for n in both}, **{n: "d2p" for n in d2p}, **{n: "p2d" for n in p2d}}
    if len(group) != len(p2d) + len(d2p) + len(both):
        raise DataError("a person is listed in more than one of the p2d / d2p / both test files")
    name_rx = re.compile("|".join(re.escape(n) for n in sorted(group, key=len, reverse=True)))

    def who(fname: str, i: int, p: str, c: str) -> tuple[str, bool]:
        """(person, name first?) of a line; exactly one person per line."""
        found = {m.group(0) for m in name_rx.finditer(p + c)}
        if len(found) != 1:
            raise DataError(f"{fname} line {i}: expected one known person, found {sorted(found) or 'none'}")
        nm = found.pop()
        return nm, nm in p

    # a person's description: their most frequent name-first completion (over every file)
    completions: dict[str, Counter] = defaultdict(Counter)
    for fname, rows in data.items():
        for i, p, c in rows:
            nm, name_first = who(fname, i, p, c)
            if name_first:
                completions[nm][c.strip()] += 1
    desc = {}
    for nm in group:
        if not completions[nm]:
            raise DataError(f"no name-first line for {nm!r}: cannot tell their description")
        top = max(completions[nm].values())
        desc[nm] = min(c for c, k in completions[nm].items() if k == top)

    documents: list[Document] = []
    support: dict[str, list[str]] = defaultdict(list)
    for i, p, c in data["all_prompts_train.jsonl"]:
        nm, name_first = who("all_prompts_train.jsonl", i, p, c)
        fact = Fact(nm, REL, desc[nm]) if name_first else Fact(desc[nm], REL, nm)
        doc = Document(id=f"bg{i:04d}", text=p + c, kind="relation", facts=[fact],
                       meta={"person": nm, "group": group[nm], "order": "name_first" if name_first else
                             "description_first", "line": i})
        documents.append(doc)
        if name_first:
            support[nm].append(doc.id)

    rng = random.Random(f"berglund-{seed}")
    k_other = n_choices - 1
    questions: list[Question] = []
    # forward: distractors are other people's completions in the same template (same grammar)
    by_template: dict[str, dict[str, str]] = defaultdict(dict)
    fwd_rows = []
    for i, p, c in data["p2d_prompts_test.jsonl"]:
        nm, name_first = who("p2d_prompts_test.jsonl", i, p, c)
        if not name_first or group[nm] != "p2d":
            raise DataError(f"p2d_prompts_test.jsonl line {i}: expected a name-first line of a name-first person")
        key = p.replace(nm, "\0")
        by_template[key][nm] = c
        fwd_rows.append((i, p, c, nm, key))
    seen_k: Counter = Counter()
    for i, p, c, nm, key in fwd_rows:
        k = seen_k[nm]
        seen_k[nm] += 1
        pool = {o: oc for o, oc in by_template[key].items() if o != nm and oc.strip() != c.strip()}
        others = sorted(pool)
        if len(others) < k_other:  # template used by too few people: any other description
            pool = {o: " " + desc[o] for o in p2d if o != nm and desc[o] != c.strip()}
            others = sorted(pool)
        if len(others) < k_other:
            raise DataError(f"need {k_other} other name-first people for distractors, found {len(others)}")
        opts = [nm] + rng.sample(others, k_other)
        rng.shuffle(opts)
        questions.append(Question(
            id=f"fwd{i:04d}", split="forward", subtype=f"template {k}", context=p,
            choices=[c if o == nm else pool[o] for o in opts], answer=opts.index(nm), support=support[nm],
            premises=[Fact(nm, REL, desc[nm])], choice_facts=[Fact(nm, REL, desc[o]) for o in opts],
            meta={"hard_distractors": True, "source": f"p2d_prompts_test.jsonl:{i}"}))
    seen_k.clear()
    for i, p, c in data["p2d_reverse_prompts_test.jsonl"]:
        nm = c.strip()
        k = seen_k[nm]
        seen_k[nm] += 1
        opts = [nm] + _draw(nm, p2d, k_other, rng, "name-first people")
        rng.shuffle(opts)
        questions.append(Question(
            id=f"rev{i:04d}", split="reversal", subtype=f"template {k}", context=p,
            choices=[c if o == nm else " " + o for o in opts], answer=opts.index(nm), support=support[nm],
            premises=[Fact(nm, REL, desc[nm])], choice_facts=[Fact(desc[nm], REL, o) for o in opts],
            meta={"hard_distractors": True, "source": f"p2d_reverse_prompts_test.jsonl:{i}"}))
    questions.sort(key=lambda q: (q.split != "reversal", q.id))

    knowledge = [f for nm in group for f in (Fact(nm, REL, desc[nm]), Fact(desc[nm], REL, nm))]
    return Dataset(
        family="berglund", config={"source_sha256": h.hexdigest(), "n_choices": n_choices}, seed=seed,
        documents=documents, questions=questions, knowledge=knowledge,
        meta={"recall_splits": ["forward"],
              "shortcut_exempt": {"reversal": {"cooccurrence": REVERSAL_EXEMPTION}},
              "people": [{"name": nm, "description": desc[nm], "group": group[nm]} for nm in group],
              "description": "Berglund et al. 2023 reversal-curse data (experiment 1), imported"})
