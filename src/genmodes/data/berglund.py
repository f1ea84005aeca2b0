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
from dataclasses import dataclass
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


Rows = list[tuple[int, str, str]]  # (line, prompt, completion)


def read_source(src: Path) -> tuple[dict[str, Rows], str]:
    """Every file of :data:`FILES`, and the sha256 over their bytes (each preceded by its name)."""
    if not src.is_dir():
        raise DataError(f"{src}: no such folder")
    data = {name: _read(src, name) for name in FILES}
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0" + (src / name).read_bytes())
    return data, h.hexdigest()


@dataclass(frozen=True)
class People:
    """Who is in the files: each person's group ("p2d" name-first, "d2p" description-first, "both")
    and description; built once by :func:`find_people`."""

    group: dict[str, str]  # name -> group: the both-orders people, then d2p, then p2d
    desc: dict[str, str]  # name -> description
    p2d: list[str]  # the name-first people, in file order
    name_rx: re.Pattern  # any known name, the longest first

    def who(self, fname: str, i: int, p: str, c: str) -> tuple[str, bool]:
        """(person, name first?) of a line; exactly one person per line."""
        found = {m.group(0) for m in self.name_rx.finditer(p + c)}
        if len(found) != 1:
            raise DataError(f"{fname} line {i}: expected one known person, found {sorted(found) or 'none'}")
        nm = found.pop()
        return nm, nm in p


def _both_people(data: dict[str, Rows], p2d: list[str]) -> list[str]:
    """The names in ``both_prompts_test`` prompts written in a ``p2d_prompts_test`` template."""
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
    return both


def find_people(data: dict[str, Rows]) -> People:
    p2d = list(dict.fromkeys(c.strip() for _, _, c in data["p2d_reverse_prompts_test.jsonl"]))
    d2p = list(dict.fromkeys(c.strip() for _, _, c in data["d2p_prompts_test.jsonl"]))
    both = _both_people(data, p2d)
    group = {**{n: "both" for n in both}, **{n: "d2p" for n in d2p}, **{n: "p2d" for n in p2d}}
    if len(group) != len(p2d) + len(d2p) + len(both):
        raise DataError("a person is listed in more than one of the p2d / d2p / both test files")
    name_rx = re.compile("|".join(re.escape(n) for n in sorted(group, key=len, reverse=True)))
    unknown = People(group=group, desc={}, p2d=p2d, name_rx=name_rx)
    # a person's description: their most frequent name-first completion (over every file)
    completions: dict[str, Counter] = defaultdict(Counter)
    for fname, rows in data.items():
        for i, p, c in rows:
            nm, name_first = unknown.who(fname, i, p, c)
            if name_first:
                completions[nm][c.strip()] += 1
    desc = {}
    for nm in group:
        if not completions[nm]:
            raise DataError(f"no name-first line for {nm!r}: cannot tell their description")
        top = max(completions[nm].values())
        desc[nm] = min(c for c, k in completions[nm].items() if k == top)
    return People(group=group, desc=desc, p2d=p2d, name_rx=name_rx)


def write_documents(rows: Rows, people: People) -> tuple[list[Document], dict[str, list[str]]]:
    """One document per training line, and each person's name-first documents (their support)."""
    documents: list[Document] = []
    support: dict[str, list[str]] = defaultdict(list)
    for i, p, c in rows:
        nm, name_first = people.who("all_prompts_train.jsonl", i, p, c)
        d = people.desc[nm]
        fact = Fact(nm, REL, d) if name_first else Fact(d, REL, nm)
        doc = Document(id=f"bg{i:04d}", text=p + c, kind="relation", facts=[fact],
                       meta={"person": nm, "group": people.group[nm], "order": "name_first" if name_first else
                             "description_first", "line": i})
        documents.append(doc)
        if name_first:
            support[nm].append(doc.id)
    return documents, support


def forward_questions(rows: Rows, people: People, support: dict[str, list[str]], rng: random.Random,
                      k_other: int) -> list[Question]:
    """name -> description; distractors are other people's completions in the same template (same
    grammar), or any other description where too few people share it."""
    by_template: dict[str, dict[str, str]] = defaultdict(dict)
    fwd_rows = []
    for i, p, c in rows:
        nm, name_first = people.who("p2d_prompts_test.jsonl", i, p, c)
        if not name_first or people.group[nm] != "p2d":
            raise DataError(f"p2d_prompts_test.jsonl line {i}: expected a name-first line of a name-first person")
        key = p.replace(nm, "\0")
        by_template[key][nm] = c
        fwd_rows.append((i, p, c, nm, key))
    desc = people.desc
    seen_k: Counter = Counter()
    questions = []
    for i, p, c, nm, key in fwd_rows:
        k = seen_k[nm]
        seen_k[nm] += 1
        pool = {o: oc for o, oc in by_template[key].items() if o != nm and oc.strip() != c.strip()}
        others = sorted(pool)
        if len(others) < k_other:  # template used by too few people: any other description
            pool = {o: " " + desc[o] for o in people.p2d if o != nm and desc[o] != c.strip()}
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
    return questions


def reversal_questions(rows: Rows, people: People, support: dict[str, list[str]], rng: random.Random,
                       k_other: int) -> list[Question]:
    """description -> name; the correct name vs ``k_other`` other name-first people's names."""
    desc = people.desc
    seen_k: Counter = Counter()
    questions = []
    for i, p, c in rows:
        nm = c.strip()
        k = seen_k[nm]
        seen_k[nm] += 1
        opts = [nm] + _draw(nm, people.p2d, k_other, rng, "name-first people")
        rng.shuffle(opts)
        questions.append(Question(
            id=f"rev{i:04d}", split="reversal", subtype=f"template {k}", context=p,
            choices=[c if o == nm else " " + o for o in opts], answer=opts.index(nm), support=support[nm],
            premises=[Fact(nm, REL, desc[nm])], choice_facts=[Fact(desc[nm], REL, o) for o in opts],
            meta={"hard_distractors": True, "source": f"p2d_reverse_prompts_test.jsonl:{i}"}))
    return questions


HUB_ID = "lberglund/reversal_curse"  # the same files on the Hugging Face Hub (MIT), in name_description_dataset/
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def files_folder(src: Path) -> Path:
    """The folder holding :data:`FILES`: ``src`` itself, or the one folder below it that does (a copy
    of the public repository keeps them in data/reverse_experiments/june_version_7921032488, the Hub
    dataset in name_description_dataset)."""
    if not src.is_dir():
        raise DataError(f"{src}: no such folder")
    if (src / FILES[0]).is_file():
        return src
    found = sorted({p.parent for p in src.glob(f"**/{FILES[0]}") if all((p.parent / f).is_file() for f in FILES)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{src}: no folder in it holds the reversal-curse files ({', '.join(FILES)})")
    raise DataError(f"{src}: several folders hold the reversal-curse files ({', '.join(map(str, found[:3]))}); "
                    "pass the one to import")


def locate(src: str) -> Path:
    """The files' folder for ``genmodes data import-berglund SRC``: a local folder (see
    :func:`files_folder`) or, when SRC is no local path but a Hub dataset id such as :data:`HUB_ID`,
    the dataset downloaded from the Hugging Face Hub (one line when that is not possible)."""
    p = Path(src).expanduser()
    if p.exists() or not _HUB_ID_RE.fullmatch(src):
        return files_folder(p)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=src, repo_type="dataset", allow_patterns=["*.jsonl", "*/*.jsonl"])
    except Exception as e:  # noqa: BLE001 - offline, unknown id, network: every failure is one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(f"{src}: not a local folder, and the Hugging Face Hub dataset {src!r} could not be "
                        f"downloaded ({type(e).__name__}: {first}); download {HUB_ID} or the repository "
                        "lukasberglund/reversal_curse elsewhere and pass its folder") from None
    return files_folder(Path(local))


def import_berglund(src: str | Path, seed: int = 0, n_choices: int = 4) -> Dataset:
    data, source_sha256 = read_source(Path(src))
    people = find_people(data)
    documents, support = write_documents(data["all_prompts_train.jsonl"], people)
    rng = random.Random(f"berglund-{seed}")  # forward questions draw first, then reversals
    questions = forward_questions(data["p2d_prompts_test.jsonl"], people, support, rng, n_choices - 1)
    questions += reversal_questions(data["p2d_reverse_prompts_test.jsonl"], people, support, rng, n_choices - 1)
    questions.sort(key=lambda q: (q.split != "reversal", q.id))

    desc = people.desc
    knowledge = [f for nm in people.group for f in (Fact(nm, REL, desc[nm]), Fact(desc[nm], REL, nm))]
    return Dataset(
        family="berglund", config={"source_sha256": source_sha256, "n_choices": n_choices}, seed=seed,
        documents=documents, questions=questions, knowledge=knowledge,
        meta={"recall_splits": ["forward"],
              "shortcut_exempt": {"reversal": {"cooccurrence": REVERSAL_EXEMPTION}},
              "people": [{"name": nm, "description": desc[nm], "group": people.group[nm]} for nm in people.group],
              "description": "Berglund et al. 2023 reversal-curse data (experiment 1), imported"})
