"""``genmodes models`` and ``genmodes score``."""

from __future__ import annotations

import argparse
import json

from genmodes.models import DEFAULT_MODEL, KNOWN_MODELS, model_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the known model specs and whether each is available here")
    p.add_argument("--cache", help="model cache directory (default $GENMODES_CACHE or ~/.cache/genmodes)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON object: the known specs with their status, and the converted model folders")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("score", help="score choices as continuations of a context (log-likelihood)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model spec (default {DEFAULT_MODEL})")
    p.add_argument("--context", required=True, help="the prompt; choices continue it")
    p.add_argument("--choice", action="append", required=True, dest="choices",
                   help="a continuation to score (repeat for each choice; include a leading space)")
    p.add_argument("--prefix", default="", help="text placed before the context (e.g. documents)")
    p.add_argument("--json", action="store_true", help="print a JSON list of per-choice scores")
    p.add_argument("--cache", help="model cache directory")
    p.set_defaults(func=cmd_score)


def cmd_models(args: argparse.Namespace) -> int:
    from genmodes.models import cache_dir

    root = cache_dir(args.cache) / "models"
    converted = sorted(p for p in root.glob("*") if (p / "config.json").is_file()) if root.is_dir() else []
    if args.json:
        models = []
        for m in KNOWN_MODELS:
            status = model_status(m.spec, args.cache)
            models.append({"spec": m.spec, "description": m.description, "status": status,
                           "available": status.startswith("available")})
        print(json.dumps({"models": models, "converted": [str(p) for p in converted], "cache": str(root)},
                         ensure_ascii=False, indent=2))
        return 0
    width = max(len(m.spec) for m in KNOWN_MODELS)
    for m in KNOWN_MODELS:
        print(f"{m.spec:<{width}}  {model_status(m.spec, args.cache)}\n{'':<{width}}  {m.description}")
    print("Also accepted: a local model directory, a .gguf file, or a Hugging Face id (needs the hub).")
    if converted:  # fp32 folders any HF tool loads, e.g. lm_eval --model_args pretrained=PATH
        print("Converted models (a Hugging Face folder each; lm-eval: --model_args pretrained=PATH):")
        for p in converted:
            print(f"  {p}")
    else:
        print(f"Converted models: none yet in {root}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from genmodes.models import check_spec, load_model
    from genmodes.scoring import Scorer, _check_request, chosen

    _check_request(args.context, args.choices)  # bad input fails before the model loads
    check_spec(args.model, args.cache)
    model, tok = load_model(args.model, cache=args.cache)
    scores = Scorer(model, tok).score([(args.context, args.choices)], prefix=args.prefix)[0]
    best = chosen(scores)
    if args.json:
        print(json.dumps([s.to_json() for s in scores], ensure_ascii=False))
        return 0
    w = max(len(repr(s.choice)) for s in scores)
    print(f"{'':2}{'choice':<{w}}  {'logprob':>9}  {'tokens':>6}  {'per char':>8}  greedy")
    for i, s in enumerate(scores):
        mark = "->" if i == best else "  "
        print(f"{mark}{s.choice!r:<{w}}  {s.logprob:>9.4f}  {s.n_tokens:>6}  {s.logprob_per_char:>8.4f}  "
              f"{'yes' if s.is_greedy else 'no'}")
    return 0
