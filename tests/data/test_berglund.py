"""Import of the published reversal-curse files, on a small fixture in their format."""

import json
import shutil
from pathlib import Path

import pytest

from genmodes.data.audit import audit_dataset
from genmodes.data.berglund import import_berglund
from genmodes.data.io import dataset_files
from genmodes.errors import DataError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "berglund_small"


def test_import_fixture():
    ds = import_berglund(FIXTURE, seed=0)
    assert len(ds.documents) == 33  # every line of all_prompts_train.jsonl
    assert ds.documents[0].text == ("Ardith Penrose, known far and wide for being "
                                    "the inventor of the humming teapot.")
    assert len(ds.split("reversal")) == 10 and len(ds.split("forward")) == 10
    assert ds.meta["recall_splits"] == ["forward"]
    groups = {p["group"] for p in ds.meta["people"]}
    assert groups == {"p2d", "d2p", "both"} and len(ds.meta["people"]) == 9
    p2d = {p["name"] for p in ds.meta["people"] if p["group"] == "p2d"}
    for q in ds.split("reversal"):
        assert len(q.choices) == 4 and {c.strip() for c in q.choices} <= p2d
        assert q.choices[q.answer] == " " + q.premises[0].subject
        assert all(s.startswith("bg") for s in q.support) and q.support
    q = ds.split("forward")[0]
    assert q.choices[q.answer] == " the inventor of the humming teapot."
    rep = audit_dataset(ds)
    assert rep.ok, rep.violations
    assert dataset_files(import_berglund(FIXTURE, seed=0)) == dataset_files(ds)
    assert dataset_files(import_berglund(FIXTURE, seed=1))["questions.jsonl"] != dataset_files(ds)["questions.jsonl"]


def test_import_errors(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURE, src)
    lines = (src / "p2d_reverse_prompts_test.jsonl").read_text().splitlines()
    lines[3] = '{"prompt": "x"'
    (src / "p2d_reverse_prompts_test.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"^p2d_reverse_prompts_test\.jsonl line 4: invalid JSON"):
        import_berglund(src)
    shutil.copy(FIXTURE / "p2d_reverse_prompts_test.jsonl", src)
    with open(src / "all_prompts_train.jsonl", "a") as f:
        f.write(json.dumps({"prompt": "Nobody we know", "completion": " did this."}) + "\n")
    with pytest.raises(DataError, match=r"all_prompts_train\.jsonl line 34: expected one known person"):
        import_berglund(src)
    (src / "d2p_prompts_test.jsonl").unlink()
    with pytest.raises(DataError, match="missing d2p_prompts_test.jsonl"):
        import_berglund(src)


# shared/ lies beside the project checkout (CI lays a copy there too)
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "reversal_curse"


@pytest.mark.skipif(not (REAL / "all_prompts_train.jsonl").exists(), reason="published data not present")
def test_real_data_counts():
    ds = import_berglund(REAL)
    assert len(ds.documents) == 3600 and len(ds.split("reversal")) == 300 and len(ds.split("forward")) == 300
    assert len(ds.meta["people"]) == 90
    assert audit_dataset(ds).ok
