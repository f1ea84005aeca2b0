"""Repeat drills (data/families/drills.py): the second run is read from the first, targets on it."""

import random

from genmodes.data.families.drills import drill_targets, repeat_documents, repeat_drill


def test_a_drill_repeats_a_run_of_distinct_words_and_trains_on_the_determined_ones():
    pool = [f"w{i}" for i in range(30)]
    docs = repeat_documents(50, random.Random(0), pool, 3, 8, 0.5, "d-")
    assert [d.id for d in docs[:2]] == ["d-00000", "d-00001"]
    flipped = 0
    for d in docs:
        words = d.text.split()
        n = len(words) // 2
        first, second = words[:n], words[n:]
        assert 3 <= n <= 8 and len(set(first)) == n and set(first) <= set(pool)
        assert second in (first, first[::-1])
        flipped += second != first
        assert d.meta == {"fresh": True, "targets": drill_targets(n)} and drill_targets(n) == list(range(n + 1, 2 * n))
    assert 10 < flipped < 40
    # the same stream, the same drills; no reversed share, no reversed drill
    assert [d.text for d in repeat_documents(50, random.Random(0), pool, 3, 8, 0.5, "d-")] == [d.text for d in docs]
    assert all(d.text.split()[:len(d.text.split()) // 2] == d.text.split()[len(d.text.split()) // 2:]
               for d in repeat_documents(20, random.Random(1), pool, 3, 8, 0.0, "d-"))


def test_a_pool_choice_is_drawn_after_the_length_and_adds_its_meta():
    a, b = ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]

    def choose(rng):
        return (b, {"other": True}) if rng.random() < 0.5 else (a, {})

    words, targets, meta = repeat_drill(random.Random(3), choose, 2, 3, 0.0)
    rng = random.Random(3)
    n = rng.randint(2, 3)
    other = rng.random() < 0.5
    assert len(words) == 2 * n and targets == drill_targets(n)
    assert set(words) <= set(b if other else a) and meta == ({"other": True} if other else {})
