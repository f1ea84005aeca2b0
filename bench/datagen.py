"""Benchmark: time to generate (and audit) every dataset family at its default (published) size.

    .venv/bin/python bench/datagen.py

Target (issue 3): all six families together under 30 s on the 2-core machine.
"""

from __future__ import annotations

import time

from genmodes.data.audit import audit_dataset
from genmodes.data.families import family_names, make_dataset
from genmodes.data.nonsense import english_words


def main() -> None:
    english_words()  # the word list loads once per process; time it apart
    total_gen = total_audit = 0.0
    print(f"{'family':<20} {'documents':>9} {'questions':>9} {'generate s':>10} {'audit s':>8}")
    for name in family_names():
        t0 = time.perf_counter()
        ds = make_dataset(name, seed=0)
        t1 = time.perf_counter()
        rep = audit_dataset(ds)
        t2 = time.perf_counter()
        assert not rep.violations, rep.violations[:3]
        total_gen += t1 - t0
        total_audit += t2 - t1
        print(f"{name:<20} {len(ds.documents):>9} {len(ds.questions):>9} {t1 - t0:>10.2f} {t2 - t1:>8.2f}")
    print(f"all six: generate {total_gen:.1f} s, audit {total_audit:.1f} s")


if __name__ == "__main__":
    main()
