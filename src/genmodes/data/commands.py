"""``genmodes data ...``: make, import-berglund, audit, show, export."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from genmodes.errors import DataError
from genmodes.limits import seed_arg


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make, import, audit, show and export datasets")
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True

    m = sub.add_parser("make", help="generate a dataset family into a folder")
    m.add_argument("family", help="family name (genmodes data make --list shows them)", nargs="?")
    m.add_argument("--out", help="output folder (replaced atomically if it is a dataset)")
    m.add_argument("--seed", type=seed_arg, default=0)
    m.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a family setting (repeatable)")
    m.add_argument("--list", action="store_true", help="list the families and their settings")
    m.add_argument("--no-audit", action="store_true", help="skip the audit after generating")
    m.set_defaults(func=cmd_make)

    i = sub.add_parser("import", help="your own data: documents and questions as JSON Lines -> a dataset folder")
    i.add_argument("--documents", required=True, metavar="D.jsonl", help='one {"id", "text"} object a line')
    i.add_argument("--questions", required=True, metavar="Q.jsonl",
                   help='one {"id", "question", "choices", "answer"} object a line (optional split, support, subtype)')
    i.add_argument("--out", required=True, help="output folder (replaced atomically if it is a dataset)")
    i.add_argument("--recall", action="append", metavar="SPLIT", default=[],
                   help="a split that tests recall of what the documents state (repeatable): the audit does not "
                        "count its answers in the documents as leaks")
    i.add_argument("--template", default="{question}",
                   help='the scored context, {question} filled in (default "{question}"; e.g. '
                        '"Question: {question}\nAnswer:")')
    i.add_argument("--no-audit", action="store_true", help="write the dataset even if it fails its audit")
    i.set_defaults(func=cmd_import)

    b = sub.add_parser("import-berglund", help="convert the published reversal-curse files (Berglund et al.)")
    b.add_argument("src", help="the files' folder (all_prompts_train.jsonl, ...), a copy of the repository "
                               "lukasberglund/reversal_curse, or the Hub dataset id lberglund/reversal_curse (online)")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=seed_arg, default=0, help="seed of the distractor draw")
    b.set_defaults(func=cmd_import_berglund)

    a = sub.add_parser("audit", help="leak, validity and shortcut-baseline checks; exit 1 on any violation")
    a.add_argument("dir")
    a.add_argument("--max", type=int, default=20, help="violations to list")
    a.add_argument("--json", action="store_true", help="print the audit as one JSON object (every violation)")
    a.set_defaults(func=cmd_audit)

    s = sub.add_parser("show", help="sizes, splits, chance and sample items")
    s.add_argument("dir")
    s.add_argument("--samples", type=int, default=3)
    s.add_argument("--json", action="store_true", help="print one JSON object: sizes, content hash, splits, samples")
    s.set_defaults(func=cmd_show)

    e = sub.add_parser("export", help="export to a Hugging Face DatasetDict or an lm-evaluation-harness task, "
                                      "or a run's condition as an inspect_ai log")
    e.add_argument("dir")
    e.add_argument("--to", required=True, choices=["hf", "lm-eval", "inspect"],
                   help="inspect: DIR is a finished run, with --condition; DEST a log folder or a .eval file")
    e.add_argument("dest")
    e.add_argument("--name", help="lm-eval task name prefix (default: genmodes_<family>)")
    e.add_argument("--condition", metavar="NAME", help="lm-eval: DIR is a finished run folder; export what this "
                   "condition scored (its documents before each question, the run's questions, its model)")
    e.add_argument("--dataset", metavar="NAME", help="with --condition: the run's dataset (when it has several)")
    e.add_argument("--seed", type=int, help="with --condition: the cell's seed (default: the run's first)")
    e.set_defaults(func=cmd_export)


def _load(path: str):
    from genmodes.data.io import load_dataset

    return load_dataset(path)


def cmd_make(args: argparse.Namespace) -> int:
    from genmodes.data.families import family_names, get_family, make_dataset, parse_overrides

    if args.list:
        for name in family_names():
            try:
                fam = get_family(name)
            except ModuleNotFoundError:
                print(f"{name}: (not available yet)")
                continue
            fields = ", ".join(f"{k}={v.default}" for k, v in fam.config.model_fields.items())
            print(f"{name}: {fam.description}\n    {fields}")
        return 0
    if not args.family:
        raise DataError("data make: a FAMILY is required (see genmodes data make --list)")
    if not args.out:
        raise DataError("data make: --out DIR is required")
    from genmodes.data.families import make_config
    from genmodes.limits import MAX_DATASET_SETTING, check_numbers

    _check_out(args.out)
    overrides = parse_overrides(args.overrides)
    check_numbers(make_config(args.family, overrides).model_dump(), f"{args.family} --set", MAX_DATASET_SETTING)
    t0 = time.perf_counter()
    ds = make_dataset(args.family, seed=args.seed, overrides=overrides)
    t1 = time.perf_counter()
    s = _audit_and_save(ds, args.out, f"{args.family}: generated", audit=not args.no_audit)
    print(f"{args.family} seed {args.seed}: {s['documents']} documents, {s['questions']} questions "
          f"({_splits(s)}), {s['knowledge']} facts -> {args.out} [generated in {t1 - t0:.2f}s]")
    return 0


def _audit_and_save(ds, out: str, what: str, audit: bool = True) -> dict:
    """Audit ``ds`` (a failure writes nothing), save it to ``out``; its summary."""
    if audit:
        from genmodes.data.audit import audit_dataset

        rep = audit_dataset(ds)
        if not rep.ok:
            raise DataError(f"{what} dataset fails its audit ({rep.violations[0]}); nothing written")
    from genmodes.data.io import save_dataset

    save_dataset(ds, out)
    return ds.summary()


def _splits(summary: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary["splits"].items())


def _check_out(out: str) -> None:
    # fail before generating, not after: the same rule save_dataset applies
    from genmodes.data.io import _check_replaceable

    _check_replaceable(Path(out), replace_any=False)


def cmd_import(args: argparse.Namespace) -> int:
    from genmodes.data.audit import audit_dataset, print_report
    from genmodes.data.importer import import_jsonl
    from genmodes.data.io import save_dataset

    _check_out(args.out)
    template = args.template.replace("\\n", "\n")  # a shell gives "\n" as two characters
    ds = import_jsonl(args.documents, args.questions, recall=args.recall, template=template)
    if not args.no_audit:
        t0 = time.perf_counter()
        rep = audit_dataset(ds)
        print_report(rep, title=f"{args.questions}: audit in {time.perf_counter() - t0:.2f}s")
        if not rep.ok:
            raise DataError(f"imported dataset fails its audit ({rep.violations[0]}); nothing written (a split "
                            "that tests recall of the documents: --recall SPLIT; to write it anyway: --no-audit)")
    save_dataset(ds, args.out)
    s = ds.summary()
    print(f"imported: {s['documents']} documents, {s['questions']} questions ({_splits(s)}) -> {args.out}")
    return 0


def cmd_import_berglund(args: argparse.Namespace) -> int:
    from genmodes.data.berglund import import_berglund, locate

    _check_out(args.out)
    t0 = time.perf_counter()
    ds = import_berglund(locate(args.src), seed=args.seed)
    s = _audit_and_save(ds, args.out, f"{args.src}: imported")
    print(f"berglund: {s['documents']} documents, {s['questions']} questions ({_splits(s)}) -> {args.out} "
          f"[{time.perf_counter() - t0:.2f}s]")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from genmodes.data.audit import audit_dataset, print_report

    ds = _load(args.dir)
    t0 = time.perf_counter()
    rep = audit_dataset(ds)
    if args.json:
        import dataclasses

        _print_json({"family": ds.family, "seed": ds.seed, "ok": rep.ok, "violations": rep.violations,
                     "splits": [dataclasses.asdict(r) for r in rep.rows],
                     "baselines": [{**dataclasses.asdict(b), "offence": b.offence} for b in rep.baselines]})
        return 0 if rep.ok else 1
    print_report(rep, title=f"{ds.family} (seed {ds.seed}): audit in {time.perf_counter() - t0:.2f}s",
                 max_violations=args.max)
    return 0 if rep.ok else 1


def _print_json(obj) -> None:
    """One JSON document on stdout; a NaN (a split with no questions) is written as null."""
    import json
    import math

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    print(json.dumps(clean(obj), ensure_ascii=False, indent=2, allow_nan=False))


def _split_rows(ds) -> list[dict]:
    recall = set(ds.meta.get("recall_splits", []))
    return [{"split": sp, "kind": "recall" if sp in recall else "held-out", "n": len(ds.split(sp)),
             "chance": ds.chance(sp), "subtypes": len({q.subtype for q in ds.split(sp)})} for sp in ds.splits]


def cmd_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from genmodes.data.io import content_hash, dataset_files

    ds = _load(args.dir)
    s = ds.summary()
    # the hash a run records for this dataset and the Hub export's card quotes
    digest = content_hash(dataset_files(ds))
    if args.json:
        _print_json({**s, "content_hash": digest, "config": ds.config, "splits": _split_rows(ds),
                     "documents_sample": [d.to_json() for d in ds.documents[: args.samples]],
                     "questions_sample": {sp: [q.to_json() for q in ds.split(sp)[: args.samples]]
                                          for sp in ds.splits}})
        return 0
    con = Console()
    con.print(f"[bold]{ds.family}[/] seed {ds.seed}: {s['documents']} documents, {s['questions']} questions, "
              f"{s['knowledge']} knowledge facts")
    con.print(f"content hash: {digest}", markup=False, highlight=False)
    con.print(f"config: {ds.config}", markup=False, highlight=False)
    t = Table()
    for c in ("split", "kind", "n", "chance", "subtypes"):
        t.add_column(c)
    for r in _split_rows(ds):
        t.add_row(r["split"], r["kind"], str(r["n"]), f"{r['chance']:.3f}", str(r["subtypes"]))
    con.print(t)
    con.print("[bold]documents[/]")
    for d in ds.documents[: args.samples]:
        con.print(f"  {d.id}: {d.text!r}", markup=False, highlight=False)
    for sp in ds.splits:
        con.print(f"[bold]{sp}[/]")
        for q in ds.split(sp)[: args.samples]:
            con.print(f"  {q.id} [{q.subtype}] {q.context!r}", markup=False, highlight=False)
            for i, c in enumerate(q.choices):
                mark = "*" if i == q.answer else " "
                con.print(f"    {mark} {c!r}", markup=False, highlight=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from genmodes.experiments import export

    if args.to == "inspect":
        if not args.condition:
            raise DataError("--to inspect exports a condition of a finished run: add --condition NAME")
        from genmodes.experiments.inspect_log import to_inspect

        path = to_inspect(args.dir, args.dest, args.condition, dataset=args.dataset, seed=args.seed)
        print(f"inspect log: {path}\nbrowse: inspect view --log-dir {path.parent}")
        return 0
    if getattr(args, "condition", None):
        if args.to != "lm-eval":
            raise DataError("--condition exports lm-eval tasks or an inspect log; use --to lm-eval or --to inspect")
        names, model_args, batch = export.to_lm_eval_condition(args.dir, args.dest, args.condition,
                                                               dataset=args.dataset, seed=args.seed, name=args.name)
        print(f"lm-eval tasks: {', '.join(names)}\nrun: lm_eval --model hf --model_args {model_args} "
              f"--tasks {names[-1]} --include_path {args.dest} --batch_size {batch}")
        return 0
    ds = _load(args.dir)
    if args.to == "hf":
        export.to_hf(ds, args.dest)
    else:
        names = export.to_lm_eval(ds, args.dest, name=args.name)
        print(f"lm-eval tasks: {', '.join(names)} (run: lm_eval --model hf --model_args pretrained=MODEL "
              f"--tasks {names[-1]} --include_path {args.dest} --batch_size {export.estimated_batch_size(ds)})")
        return 0
    print(f"wrote {args.dest}")
    return 0
