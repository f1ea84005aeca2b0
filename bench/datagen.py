"""Benchmark: time to generate (and audit) every dataset family at its default (published) size.

    OMP_NUM_THREADS=1 python bench/datagen.py
    python bench/datagen.py --quick     # every family at a small size: checks the bench runs (seconds)

Target: all families together under 30 s on a 2-core machine; the last line gives the total as a
ratio of that target.
"""

from __future__ import annotations

import argparse
import time

from genmodes.data.audit import audit_dataset
from genmodes.data.families import family_names, make_dataset
from genmodes.data.nonsense import english_words

TARGET_S = 30.0
# Small settings per family for --quick (every one passes its audit at seed 0).
QUICK = {
    "simple_reversals": {"n_facts": 10},
    "simple_syllogisms": {"n_examples": 12},
    "reversal_curse": {"n_people_a": 6, "n_people_d": 2, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2},
    "semantic_structure": {"n_documents": 300, "n_qa_items": 20, "questions_per_split": 20},
    "codebook": {"n_codebooks": 3, "sequences_per_codebook": 30, "questions_per_codebook": 5},
    "relations": {"n_relations": 200, "heldout_fraction": 0.05, "n_entities": 200, "n_episodes": 50,
                  "n_filler": 50, "n_trained_questions": 30},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every family at a small size (seconds)")
    args = ap.parse_args()
    english_words()  # the word list loads once per process; time it apart
    total_gen = total_audit = 0.0
    names = family_names()
    print(f"{'family':<20} {'documents':>9} {'questions':>9} {'generate s':>10} {'audit s':>8}")
    for name in names:
        t0 = time.perf_counter()
        ds = make_dataset(name, seed=0, overrides=QUICK.get(name) if args.quick else None)
        t1 = time.perf_counter()
        rep = audit_dataset(ds)
        t2 = time.perf_counter()
        assert not rep.violations, rep.violations[:3]
        total_gen += t1 - t0
        total_audit += t2 - t1
        print(f"{name:<20} {len(ds.documents):>9} {len(ds.questions):>9} {t1 - t0:>10.2f} {t2 - t1:>8.2f}")
    total = total_gen + total_audit
    print(f"all {len(names)} families{' (quick sizes)' if args.quick else ''}: generate {total_gen:.1f} s, "
          f"audit {total_audit:.1f} s; total / target ({TARGET_S:.0f} s): {total / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
