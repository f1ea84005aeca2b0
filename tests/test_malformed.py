"""Malformed input to every command (issue 12): exit 2, one ``genmodes: error:`` line, no traceback,
and no new file on disk except what a resume needs.

Cases are generated: mutations of a valid config (one field at a time), of a saved dataset folder
(one file at a time) fed to every command that reads one, of a run folder fed to ``report``, bad
arguments and output paths, a read-only mount and a full filesystem. Commands run in-process
(``genmodes.cli.main``); tiny-random only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from genmodes.cli import main

TINY_SR = {"n_facts": 3, "articles_per_fact": 1}


# ------------------------------------------------------------------------------------------ harness

def invoke(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # --help and friends; never expected here
            rc = e.code if isinstance(e.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, n), root))
    return found


def assert_one_line_error(rc: int, err: str, expect: str | None = None) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if "genmodes: error:" in ln]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("genmodes: error: "), err
    if expect is not None:
        assert expect.lower() in errors[0].lower(), f"{expect!r} not in {errors[0]!r}"
    return errors[0]


def check_case(tmp: Path, argv: list[str], expect: str | None = None, allowed: tuple[str, ...] = ()) -> str:
    """Run ``argv`` from ``tmp``; assert the one-line error and that nothing new is on disk (paths
    starting with one of ``allowed`` excepted: a resumable run's folder)."""
    before = snapshot(tmp)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        rc, _, err = invoke(argv)
    finally:
        os.chdir(cwd)
    line = assert_one_line_error(rc, err, expect)
    new = {p for p in snapshot(tmp) - before if not any(p == a or p.startswith(a + os.sep) for a in allowed)}
    assert not new, f"left behind: {sorted(new)}"
    return line


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ds") / "sr"
    rc, _, err = invoke(["data", "make", "simple_reversals", "--out", str(d), "--seed", "1",
                         *[f"--set={k}={v}" for k, v in TINY_SR.items()]])
    assert rc == 0, err
    return d


def base_config(**over: Any) -> dict[str, Any]:
    cfg = {"name": "t", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "sr", "family": "simple_reversals", "settings": dict(TINY_SR)}],
           "conditions": [{"name": "pretrained"}]}
    cfg.update(over)
    return cfg


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------------------------------ configs

def _ds(**over):
    return [{"name": "sr", "family": "simple_reversals", "settings": dict(TINY_SR), **over}]


def _cond(name="finetune", **settings):
    return [{"name": name, "settings": settings}]


FIELD_CASES: list[tuple[str, dict[str, Any], str]] = [
    # (id, top-level override, expected text in the error line)
    ("name-empty", {"name": ""}, "name is empty"),
    ("name-slash", {"name": "a/b"}, "contains '/'"),
    ("name-dotdot", {"name": ".."}, "must not start with '.'"),
    ("name-300", {"name": "x" * 300}, "at most 100"),
    ("name-int", {"name": 5}, "name"),
    ("name-null", {"name": None}, "name"),
    ("name-newline", {"name": "a\nb"}, "contains"),
    ("model-typo", {"model": "tiny-randum"}, "unknown model 'tiny-randum'"),
    ("model-empty", {"model": ""}, "model"),
    ("model-int", {"model": 7}, "model"),
    ("model-missing-gguf", {"model": "/no/such/m.gguf"}, "GGUF file not found"),
    ("model-list", {"model": ["tiny-random"]}, "model"),
    ("seeds-empty", {"seeds": []}, "seeds"),
    ("seeds-negative", {"seeds": [-1]}, "seeds[0]"),
    ("seeds-beyond-int64", {"seeds": [2**70]}, "4294967295"),
    ("seeds-string", {"seeds": ["a"]}, "seeds[0]"),
    ("seeds-duplicate", {"seeds": [0, 0]}, "duplicate seeds"),
    ("seeds-float", {"seeds": [0.5]}, "seeds[0]"),
    ("seeds-inf", {"seeds": [float("inf")]}, "seeds[0]"),
    ("seeds-scalar", {"seeds": 3}, "seeds"),
    ("threads-zero", {"threads": 0}, "threads"),
    ("threads-huge", {"threads": 2**70}, "1024"),
    ("threads-string", {"threads": "many"}, "threads"),
    ("scoring-zero", {"scoring": {"batch_tokens": 0}}, "batch_tokens"),
    ("scoring-huge", {"scoring": {"batch_tokens": 10**30}}, "batch_tokens"),
    ("scoring-inf", {"scoring": {"batch_tokens": float("inf")}}, "batch_tokens"),
    ("scoring-unknown", {"scoring": {"batch": 1}}, "scoring.batch"),
    ("unknown-key", {"colour": "blue"}, "colour"),
    ("datasets-empty", {"datasets": []}, "datasets"),
    ("datasets-scalar", {"datasets": "sr"}, "datasets"),
    ("conditions-empty", {"conditions": []}, "conditions"),
    ("conditions-scalar", {"conditions": "pretrained"}, "conditions"),
    ("ds-family-unknown", {"datasets": [{"family": "nope"}]}, "unknown dataset family 'nope'"),
    ("ds-two-sources", {"datasets": [{"family": "simple_reversals", "path": "x"}]}, "exactly one of"),
    ("ds-no-source", {"datasets": [{"name": "x"}]}, "exactly one of"),
    ("ds-setting-unknown", {"datasets": _ds(settings={"n_factz": 3})}, "n_factz"),
    ("ds-setting-type", {"datasets": _ds(settings={"n_facts": "many"})}, "n_facts"),
    ("ds-setting-huge", {"datasets": _ds(settings={"n_facts": 3, "articles_per_fact": 10**9})}, "articles_per_fact"),
    ("ds-codebook-huge", {"datasets": [{"family": "codebook", "settings": {"sequences_per_codebook": 10**9}}]},
     "at most 1,000,000"),
    ("ds-setting-sci-huge", {"datasets": _ds(settings={"n_facts": 3, "articles_per_fact": "1e9"})}, "articles_per_fact"),
    ("ds-setting-inf", {"datasets": _ds(settings={"n_facts": 3, "articles_per_fact": float("inf")})}, "articles_per_fact"),
    ("ds-path-missing", {"datasets": [{"path": "/no/such/dataset"}]}, "no such directory"),
    ("ds-berglund-missing", {"datasets": [{"berglund": "/no/such/dir"}]}, "no such directory"),
    ("ds-splits-empty", {"datasets": _ds(splits=[])}, "splits"),
    ("ds-splits-unknown", {"datasets": _ds(splits=["nope"])}, "unknown split"),
    ("ds-splits-string", {"datasets": _ds(splits="forward")}, "splits"),
    ("ds-max-zero", {"datasets": _ds(max_per_split=0)}, "max_per_split"),
    ("ds-max-huge", {"datasets": _ds(max_per_split=2**70)}, "max_per_split"),
    ("ds-seed-negative", {"datasets": _ds(seed=-3)}, "seed"),
    ("ds-seed-huge", {"datasets": _ds(seed=2**64)}, "seed"),
    ("ds-name-empty", {"datasets": _ds(name="")}, "name is empty"),
    ("ds-name-slash", {"datasets": _ds(name="../x")}, "contains '/'"),
    ("ds-settings-on-path", {"datasets": [{"path": "/tmp", "settings": {"a": 1}}]}, "settings"),
    ("ds-duplicate-names", {"datasets": _ds() + _ds()}, "duplicate dataset"),
    ("ds-not-mapping", {"datasets": ["simple_reversals"]}, "datasets[0]"),
    ("cond-unknown-kind", {"conditions": [{"name": "finetunez"}]}, "unknown condition 'finetunez'"),
    ("cond-kind-unknown", {"conditions": [{"name": "a", "kind": "nope"}]}, "unknown condition 'nope'"),
    ("cond-name-empty", {"conditions": [{"name": "", "kind": "pretrained"}]}, "name is empty"),
    ("cond-name-300", {"conditions": [{"name": "c" * 300, "kind": "pretrained"}]}, "at most 100"),
    ("cond-name-slash", {"conditions": [{"name": "a/b", "kind": "pretrained"}]}, "contains '/'"),
    ("cond-name-nul", {"conditions": [{"name": "a\0b", "kind": "pretrained"}]}, "NUL"),
    ("cond-duplicate", {"conditions": [{"name": "pretrained"}, {"name": "pretrained"}]}, "duplicate condition"),
    ("cond-setting-unknown", {"conditions": _cond("in_context", budget=5)}, "budget"),
    ("ft-lr-inf", {"conditions": _cond(lr=float("inf"))}, "lr: inf is not a finite number"),
    ("ft-lr-nan", {"conditions": _cond(lr=float("nan"))}, "lr"),
    ("ft-lr-negative", {"conditions": _cond(lr=-1.0)}, "lr"),
    ("ft-lr-string-inf", {"conditions": _cond(lr="inf")}, "lr"),
    ("ft-epochs-inf", {"conditions": _cond(epochs=float("inf"))}, "epochs"),
    ("ft-epochs-1e12", {"conditions": _cond(epochs="1e12")}, "at most 10,000"),
    ("ft-epochs-zero", {"conditions": _cond(epochs=0)}, "epochs"),
    ("ft-steps-huge", {"conditions": _cond(steps=10**12)}, "at most 100,000,000"),
    ("ft-steps-and-epochs", {"conditions": _cond(steps=2, epochs=1)}, "both set"),
    ("ft-batch-huge", {"conditions": _cond(batch_size=2**70)}, "batch_size"),
    ("ft-seq-len-huge", {"conditions": _cond(seq_len=10**12)}, "seq_len"),
    ("ft-kinds-unknown", {"conditions": _cond(kinds=["nope"], steps=1)}, "kinds"),
    ("ft-kinds-empty", {"conditions": _cond(kinds=[])}, "kinds"),
    ("ft-lora-target", {"conditions": _cond(method="lora", target_modules=["nope_proj"], steps=1)}, "target_modules"),
    ("ft-method", {"conditions": _cond(method="magic")}, "method"),
    ("ft-grad-clip-inf", {"conditions": _cond(grad_clip=float("inf"))}, "grad_clip"),
    ("ret-k-huge", {"conditions": _cond("retrieval", k=10**12)}, "beyond what any machine"),
    ("ft-seq-len-over-window", {"conditions": _cond(seq_len=100_000, steps=1)},
     "bad setting 'seq_len': 100000 exceeds the model's context (8192)"),
    ("thinking-over-window", {"conditions": [{"name": "t", "model": "pretrained",
                                              "context": {"kind": "thinking", "max_thought_tokens": 9000}}]},
     "max_thought_tokens': 9000 exceeds the model's context"),
    ("compare-unknown-condition", {"compare": [{"a": "pretrained", "b": "nope"}]},
     "compare[0].b: no condition named 'nope'"),
    ("compare-same", {"compare": [{"a": "pretrained", "b": "pretrained"}]}, "a and b are both"),
    ("compare-unknown-dataset", {"conditions": [{"name": "pretrained"}, {"name": "in_context"}],
                                 "compare": [{"a": "in_context", "b": "pretrained", "dataset": "nope"}]},
     "compare[0].dataset: no dataset named 'nope'"),
    ("compare-unknown-split", {"conditions": [{"name": "pretrained"}, {"name": "in_context"}],
                               "compare": [{"a": "in_context", "b": "pretrained", "split": "sideways"}]},
     "compare[0].split: no split 'sideways'"),
    ("compare-not-a-list", {"compare": "in_context"}, "compare"),
    ("compare-unknown-key", {"compare": [{"a": "pretrained", "b": "in_context", "splits": "x"}]}, "compare[0]"),
    ("scratch-model-mix", {"model": "scratch"}, "scratch"),
    ("scratch-needs-scratch-model", {"conditions": [{"name": "from_scratch"}]}, "set the config's model to 'scratch'"),
]


@pytest.mark.parametrize("case", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_bad_config_field(tmp_path, case):
    _, over, expect = case
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(**over), allow_unicode=True))
    check_case(tmp_path, ["run", cfg, "--out", tmp_path / "run", "--no-report"], expect)


def _deep(n: int) -> str:
    return "name: t\nx: " + "[" * n + "]" * n + "\n"


FILE_CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty-file", lambda: b"", "mapping"),
    ("top-list", lambda: b"- a\n- b\n", "mapping"),
    ("top-scalar", lambda: b"42\n", "mapping"),
    ("invalid-yaml", lambda: b"name: x\ndatasets: [\n", "line"),
    ("tabs", lambda: b"name: x\n\tmodel: y\n", "YAML"),
    ("utf16", lambda: yaml.safe_dump(base_config()).encode("utf-16"), "UTF-16"),
    ("latin1", lambda: "name: caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    ("binary", lambda: bytes(range(256)) * 4, "c.yaml"),
    ("nul-bytes", lambda: b"name: t\0\n", "NUL"),
    ("deep-list", lambda: _deep(5000).encode(), "nested"),
    ("deep-list-100", lambda: _deep(100).encode(), "nested"),
    ("deep-dict", lambda: ("name: t\nx: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n").encode(), "nested"),
    ("aliases", lambda: ("a: &a [" + ",".join(["x"] * 30) + "]\n"
                         + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 30) + "]\n"
                                   for p, c in zip("abcdef", "bcdefg")) + "name: t\n").encode(), "values"),
    ("huge-file", lambda: b"# " + b"x" * (2 << 20) + b"\nname: t\n", "at most"),
    ("int-key", lambda: b"1: a\nname: t\n", "not a string"),
    ("bom-utf8-garbage", lambda: b"\xef\xbb\xbf\xff\xfe", "c.yaml"),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c[0] for c in FILE_CASES])
@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
def test_bad_config_file(tmp_path, case, dry):
    _, make, expect = case
    cfg = write(tmp_path / "c.yaml", make())
    argv = ["run", cfg, "--out", tmp_path / "run", "--no-report"] + (["--dry-run"] if dry else [])
    check_case(tmp_path, argv, expect)


def test_config_paths(tmp_path):
    """A config that is missing, a folder, a FIFO or a device (reading either would never end)."""
    check_case(tmp_path, ["run", tmp_path / "nope.yaml"], "not found")
    (tmp_path / "dir.yaml").mkdir()
    check_case(tmp_path, ["run", tmp_path / "dir.yaml"], "is a folder")
    check_case(tmp_path, ["run", "/dev/zero"], "not a regular file")
    os.mkfifo(tmp_path / "fifo.yaml")
    check_case(tmp_path, ["run", tmp_path / "fifo.yaml"], "not a regular file")
    check_case(tmp_path, ["run", "/dev/null", "--dry-run"], "not a regular file")


def test_unreadable_config(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop reading")
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    cfg.chmod(0)
    check_case(tmp_path, ["run", cfg], "cannot read")


# ------------------------------------------------------------------------------------------ dataset folders

def _edit_jsonl(name: str, fn: Callable[[list[dict]], list[Any]]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        rows = [json.loads(x) for x in (d / name).read_text().splitlines() if x.strip()]
        (d / name).write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in fn(rows)))
    return edit


def _set(name: str, i: int, **kv) -> Callable[[Path], None]:
    return _edit_jsonl(name, lambda rows: [({**r, **kv} if j == i else r) for j, r in enumerate(rows)])


def _drop(name: str, key: str) -> Callable[[Path], None]:
    return _edit_jsonl(name, lambda rows: [{k: v for k, v in r.items() if k != key} for r in rows])


def _raw(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _meta(**kv) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        m = json.loads((d / "meta.json").read_text())
        m.update(kv)
        (d / "meta.json").write_text(json.dumps(m))
    return edit


def _rm(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def _as_dir(name: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        (d / name).unlink()
        (d / name).mkdir()
    return edit


DATASET_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("meta-missing", _rm("meta.json"), "meta.json"),
    ("meta-not-json", _raw("meta.json", b"{nope"), "meta.json"),
    ("meta-list", _raw("meta.json", b"[1, 2]"), "expected a JSON object"),
    ("meta-string", _raw("meta.json", b'"x"'), "expected a JSON object"),
    ("meta-utf16", lambda d: (d / "meta.json").write_bytes((d / "meta.json").read_text().encode("utf-16")), "UTF-16"),
    ("meta-binary", _raw("meta.json", bytes(range(256))), "meta.json"),
    ("meta-family-int", _meta(family=5), "'family'"),
    ("meta-seed-string", _meta(seed="x"), "'seed'"),
    ("meta-seed-huge", _meta(seed=2**70), "seed"),
    ("meta-seed-bool", _meta(seed=True), "'seed'"),
    ("meta-config-list", _meta(config=[1]), "'config'"),
    ("meta-meta-list", _meta(meta=[1]), "'meta'"),
    ("meta-hash-int", _meta(content_hash=5), "content_hash"),
    ("meta-deep", _raw("meta.json", b"[" * 100000 + b"]" * 100000), "meta.json"),
    ("meta-folder", _as_dir("meta.json"), "meta.json"),
    ("q-missing", _rm("questions.jsonl"), "questions.jsonl"),
    ("q-folder", _as_dir("questions.jsonl"), "questions.jsonl"),
    ("q-bad-json", _edit_jsonl("questions.jsonl", lambda r: r + ["{nope"]), "questions.jsonl line 7"),
    ("q-not-object", _edit_jsonl("questions.jsonl", lambda r: ["[1,2]"] + r), "questions.jsonl line 1"),
    ("q-missing-field", _drop("questions.jsonl", "context"), "'context'"),
    ("q-answer-range", _set("questions.jsonl", 0, answer=9), "out of range"),
    ("q-answer-string", _set("questions.jsonl", 0, answer="0"), "'answer'"),
    ("q-answer-huge", _set("questions.jsonl", 0, answer=2**70), "out of range"),
    ("q-empty-choice", _set("questions.jsonl", 1, choices=["", " x"]), "choice 0 is empty"),
    ("q-no-choices", _set("questions.jsonl", 0, choices=[]), "choices"),
    ("q-choice-int", _set("questions.jsonl", 0, choices=[1, 2]), "choices"),
    ("q-duplicate-id", _edit_jsonl("questions.jsonl", lambda r: r + [r[0]]), "already used on line 1"),
    ("q-split-empty", _set("questions.jsonl", 0, split=""), "split"),
    ("q-deep", _edit_jsonl("questions.jsonl", lambda r: r + ['{"a": ' + "[" * 5000 + "]" * 5000 + "}"]), "nested"),
    ("q-deep-70", _edit_jsonl("questions.jsonl", lambda r: [{**r[0], "meta": {"x": json.loads("[" * 70 + "]" * 70)}}] + r[1:]), "nested"),
    ("q-latin1", _raw("questions.jsonl", '{"id": "caf\u00e9"}\n'.encode("latin-1")), "not UTF-8"),
    ("q-utf16", lambda d: (d / "questions.jsonl").write_bytes((d / "questions.jsonl").read_text().encode("utf-16")), "UTF-16"),
    ("q-binary", _raw("questions.jsonl", b"\x00\x01\x02"), "binary"),
    ("q-nan-answer", _edit_jsonl("questions.jsonl", lambda r: [json.dumps({**r[0], "answer": float("nan")})] + r[1:]), "'answer'"),
    ("d-duplicate-id", _edit_jsonl("documents.jsonl", lambda r: r + [r[0]]), "already used"),
    ("d-missing-text", _drop("documents.jsonl", "text"), "'text'"),
    ("d-bad-fact", _set("documents.jsonl", 0, facts=[["a", "b"]]), "three strings"),
    ("d-bad-json", _raw("documents.jsonl", b"{\n"), "documents.jsonl line 1"),
    ("k-bad-row", _raw("knowledge.jsonl", b'{"a": 1}\n'), "knowledge.jsonl line 1"),
    ("k-missing", _rm("knowledge.jsonl"), "knowledge.jsonl"),
    ("hash-mismatch", _edit_jsonl("documents.jsonl", lambda r: r[:-1]), "content_hash"),
]


def _commands(d: Path, tmp: Path) -> dict[str, tuple[list[Any], tuple[str, ...]]]:
    cfg = tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config(datasets=[{"name": "d", "path": str(d)}])))
    return {
        "show": (["data", "show", d], ()),
        "audit": (["data", "audit", d], ()),
        "export": (["data", "export", d, "--to", "lm-eval", tmp / "exp"], ()),
        "run": (["run", cfg, "--out", tmp / "run", "--no-report"], ()),
    }


@pytest.mark.parametrize("command", ["show", "audit", "export", "run"])
@pytest.mark.parametrize("case", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_dataset_folder(tmp_path, dataset_dir, case, command):
    _, edit, expect = case
    d = tmp_path / "d"
    shutil.copytree(dataset_dir, d)
    edit(d)
    argv, allowed = _commands(d, tmp_path)[command]
    check_case(tmp_path, argv, expect, allowed)


def test_zero_questions_is_an_error_for_run(tmp_path, dataset_dir):
    d = tmp_path / "d"
    shutil.copytree(dataset_dir, d)
    (d / "questions.jsonl").write_text("")
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(datasets=[{"name": "d", "path": str(d)}])))
    check_case(tmp_path, ["run", cfg, "--out", tmp_path / "run"], "content_hash")
    (d / "meta.json").write_text(json.dumps({**json.loads((d / "meta.json").read_text()), "content_hash": None}))
    check_case(tmp_path, ["run", cfg, "--out", tmp_path / "run"], "no questions")


# ------------------------------------------------------------------------------------------ berglund files

BERGLUND = Path(__file__).resolve().parent / "fixtures" / "berglund_small"
BERGLUND_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("missing-file", _rm("p2d_prompts_test.jsonl"), "missing p2d_prompts_test.jsonl"),
    ("bad-json", _raw("p2d_prompts_test.jsonl", b'{"prompt": "a", "completion": " b"}\n{nope\n'), "line 2"),
    ("not-object", _raw("all_prompts_train.jsonl", b"[1]\n"), "line 1"),
    ("no-completion", _raw("all_prompts_train.jsonl", b'{"prompt": "a"}\n'), "completion"),
    ("utf16", lambda d: (d / "all_prompts_train.jsonl").write_bytes(
        (d / "all_prompts_train.jsonl").read_text().encode("utf-16")), "UTF-16"),
    ("latin1", _raw("all_prompts_train.jsonl", '{"prompt": "caf\u00e9"}\n'.encode("latin-1")), "not UTF-8"),
    ("binary", _raw("d2p_prompts_test.jsonl", bytes(range(1, 256))), "d2p_prompts_test.jsonl"),
    ("deep", _raw("d2p_prompts_test.jsonl", b"[" * 5000 + b"]" * 5000 + b"\n"), "nested"),
    ("empty", _raw("both_prompts_test.jsonl", b""), "no rows"),
    ("folder", _as_dir("both_prompts_test.jsonl"), "both_prompts_test.jsonl"),
]


@pytest.mark.parametrize("command", ["import", "run"])
@pytest.mark.parametrize("case", BERGLUND_CASES, ids=[c[0] for c in BERGLUND_CASES])
def test_bad_berglund_folder(tmp_path, case, command):
    _, edit, expect = case
    src = tmp_path / "bg"
    shutil.copytree(BERGLUND, src)
    edit(src)
    if command == "import":
        argv = ["data", "import-berglund", src, "--out", tmp_path / "out"]
    else:
        cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(datasets=[{"berglund": str(src)}])))
        argv = ["run", cfg, "--out", tmp_path / "run"]
    check_case(tmp_path, argv, expect)


# ------------------------------------------------------------------------------------------ arguments

ARG_CASES: list[tuple[str, list[str], str]] = [
    ("unknown-command", ["frobnicate"], "invalid choice"),
    ("run-no-config", ["run"], "config"),
    ("run-unknown-flag", ["run", "c.yaml", "--fast"], "unrecognized arguments"),
    ("make-no-family", ["data", "make", "--out", "o"], "FAMILY"),
    ("make-no-out", ["data", "make", "simple_reversals"], "--out"),
    ("make-unknown-family", ["data", "make", "nope", "--out", "o"], "unknown dataset family"),
    ("make-seed-string", ["data", "make", "simple_reversals", "--out", "o", "--seed", "x"], "seed"),
    ("make-seed-negative", ["data", "make", "simple_reversals", "--out", "o", "--seed=-1"], "4294967295"),
    ("make-seed-huge", ["data", "make", "simple_reversals", "--out", "o", "--seed", str(2**70)], "4294967295"),
    ("make-set-no-eq", ["data", "make", "simple_reversals", "--out", "o", "--set", "n_facts"], "key=value"),
    ("make-set-unknown", ["data", "make", "simple_reversals", "--out", "o", "--set", "zzz=1"], "zzz"),
    ("make-set-type", ["data", "make", "simple_reversals", "--out", "o", "--set", "n_facts=x"], "n_facts"),
    ("make-set-huge", ["data", "make", "simple_reversals", "--out", "o", "--set", "n_facts=3",
                       "--set", "articles_per_fact=1000000000"], "articles_per_fact"),
    ("make-set-inf", ["data", "make", "simple_reversals", "--out", "o", "--set", "n_facts=3",
                      "--set", "articles_per_fact=inf"], "articles_per_fact"),
    ("codebook-huge", ["data", "make", "codebook", "--out", "o", "--set", "sequences_per_codebook=1e9"],
     "sequences_per_codebook"),
    ("make-out-nul", ["data", "make", "simple_reversals", "--out", "a\0b"], "NUL"),
    ("berglund-missing", ["data", "import-berglund", "/no/such", "--out", "o"], "/no/such"),
    ("berglund-no-out", ["data", "import-berglund", "/no/such"], "--out"),
    ("show-missing", ["data", "show", "/no/such"], "no such dataset folder"),
    ("show-not-dataset", ["data", "show", "."], "meta.json"),
    ("show-samples-string", ["data", "show", ".", "--samples", "x"], "samples"),
    ("audit-missing", ["data", "audit", "/no/such"], "no such dataset folder"),
    ("export-bad-to", ["data", "export", ".", "--to", "csv", "x"], "invalid choice"),
    ("export-no-dest", ["data", "export", ".", "--to", "hf"], "dest"),
    ("score-no-context", ["score", "--model", "tiny-random", "--choice", " a"], "--context"),
    ("score-no-choice", ["score", "--model", "tiny-random", "--context", "a"], "--choice"),
    ("score-empty-choice", ["score", "--model", "tiny-random", "--context", "a", "--choice", ""], "empty choice"),
    ("score-model-typo", ["score", "--model", "tiny-randum", "--context", "a", "--choice", " b"], "unknown model"),
    ("score-model-empty", ["score", "--model", "", "--context", "a", "--choice", " b"], "model"),
    ("score-missing-gguf", ["score", "--model", "x.gguf", "--context", "a", "--choice", " b"], "not found"),
    ("score-model-dir", ["score", "--model", ".", "--context", "a", "--choice", " b"], "config.json"),
    ("report-missing", ["report", "/no/such/run"], "run folder not found"),
    ("report-not-run", ["report", "."], "results.jsonl"),
    ("run-device", ["run", "c.yaml", "--device", "tpu"], "device"),
    ("run-device-cuda-index", ["run", "c.yaml", "--device", "cuda:99"], "cuda"),
    ("run-device-garbage", ["run", "c.yaml", "--device", "!!"], "device"),
]


@pytest.mark.parametrize("case", ARG_CASES, ids=[c[0] for c in ARG_CASES])
def test_bad_arguments(tmp_path, case):
    _, argv, expect = case
    write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    check_case(tmp_path, argv, expect)


def test_garbage_gguf_prints_only_the_error(tmp_path):
    g = write(tmp_path / "m.gguf", b"not a gguf at all" * 10)
    line = check_case(tmp_path, ["score", "--model", g, "--context", "a", "--choice", " b"], "not a GGUF")
    assert "m.gguf" in line
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(model=str(g))))
    check_case(tmp_path, ["run", cfg, "--out", tmp_path / "run"], "not a GGUF")


# ------------------------------------------------------------------------------------------ model files

def _gguf(tensor_elements: int = 1000, version: int = 3) -> bytes:
    """A GGUF header (one metadata string, one f32 tensor at offset 0) with no tensor data after it."""
    import struct

    def string(x: str) -> bytes:
        return struct.pack("<Q", len(x.encode())) + x.encode()

    head = b"GGUF" + struct.pack("<IQQ", version, 1, 1)
    head += string("general.architecture") + struct.pack("<I", 8) + string("llama")
    head += string("w") + struct.pack("<I", 1) + struct.pack("<Q", tensor_elements) + struct.pack("<IQ", 0, 0)
    return head


def _safetensors_folder(d: Path, declared: int, data: int) -> Path:
    import struct

    d.mkdir()
    write(d / "config.json", json.dumps({"model_type": "llama"}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [declared // 4], "data_offsets": [0, declared]}}).encode()
    write(d / "model.safetensors", struct.pack("<Q", len(header)) + header + b"\0" * data)
    return d


MODEL_FILE_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("gguf-bad-version", lambda t: write(t / "m.gguf", b"GGUFjunkjunkjunk"), "GGUF version 1802401130 is not one"),
    ("gguf-header-cut", lambda t: write(t / "m.gguf", _gguf()[:30]), "ends inside its header"),
    ("gguf-no-tensor-data", lambda t: write(t / "m.gguf", _gguf()), "the GGUF file is truncated"),
    ("gguf-version-1", lambda t: write(t / "m.gguf", _gguf(version=1)), "GGUF version 1 is not one"),
    ("folder-config-not-json", lambda t: (t / "m").mkdir() or write(t / "m" / "config.json", "{nope") and t / "m",
     "config.json: not valid JSON"),
    ("folder-no-model-type", lambda t: (t / "m").mkdir() or write(t / "m" / "config.json", "{}") and t / "m",
     "no 'model_type'"),
    ("folder-no-weights", lambda t: (t / "m").mkdir() or write(t / "m" / "config.json", '{"model_type": "llama"}')
     and t / "m", "no weights"),
    ("safetensors-truncated", lambda t: _safetensors_folder(t / "m", 400, 10), "the safetensors file is truncated"),
    ("safetensors-not", lambda t: _safetensors_folder(t / "m", 400, 400) and write(t / "m" / "model.safetensors",
                                                                                   b"\xff" * 64) and t / "m",
     "not a safetensors file"),
]


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("case", MODEL_FILE_CASES, ids=[c[0] for c in MODEL_FILE_CASES])
def test_an_unreadable_model_file_fails_before_the_first_write(tmp_path, case, dry):
    """Checked when the config is: one line saying what is wrong with the file (no Python class name),
    exit 2, and no run folder."""
    _, make, expect = case
    model = make(tmp_path)
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(model=str(model))))
    line = check_case(tmp_path, ["run", cfg, "--out", tmp_path / "out"] + (["--dry-run"] if dry else []), expect)
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", line), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
def test_a_seq_len_past_the_window_fails_before_the_first_write(tmp_path, dry):
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(conditions=_cond(seq_len=100_000, steps=1))))
    check_case(tmp_path, ["run", cfg, "--out", tmp_path / "out"] + (["--dry-run"] if dry else []),
               "conditions[0] (finetune): bad setting 'seq_len': 100000 exceeds the model's context (8192)")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ output paths

OUT_CASES = ["file", "under-file", "not-a-run", "name-too-long", "different-finished-run", "config-is-dir",
             "foreign-config"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fin")
    cfg = write(root / "c.yaml", yaml.safe_dump(base_config()))
    rc, _, err = invoke(["run", cfg, "--out", root / "run"])
    assert rc == 0, err
    return root / "run"


@pytest.mark.parametrize("case", OUT_CASES)
def test_bad_run_output(tmp_path, case, finished_run):
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    out = tmp_path / "out"
    expect = {"file": "is a file", "under-file": "not a directory", "not-a-run": "not a genmodes run folder",
              "name-too-long": "255 bytes", "different-finished-run": "different config",
              "config-is-dir": "not a file", "foreign-config": "holds a config.yaml but no manifest.json"}[case]
    if case == "file":
        write(out, "x")
    elif case == "under-file":
        write(out, "x")
        out = out / "sub"
    elif case == "not-a-run":
        out.mkdir()
        write(out / "notes.txt", "mine")
    elif case == "name-too-long":
        out = tmp_path / ("r" * 300)
    elif case == "different-finished-run":
        shutil.copytree(finished_run, out)
        cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config(seeds=[5])))
    elif case == "config-is-dir":
        out.mkdir()
        (out / "config.yaml").mkdir()
    elif case == "foreign-config":
        out.mkdir()
        write(out / "config.yaml", "# my own notes, not a genmodes run\nname: mine\n")
    def files() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} if case in ("not-a-run", "foreign-config",
                                                                                  "different-finished-run") else {}
    before = files()
    check_case(tmp_path, ["run", cfg, "--out", out], expect)
    check_case(tmp_path, ["run", cfg, "--out", out, "--dry-run"], expect)
    assert files() == before


def test_an_empty_out_folder_is_fine(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    rc, _, err = invoke(["run", cfg, "--out", out, "--no-report"])
    assert rc == 0, err
    assert (out / "manifest.json").is_file() and (out / "summary.csv").is_file()


DATA_OUT_CASES = ["file", "under-file", "not-a-dataset", "name-too-long"]


@pytest.mark.parametrize("command,case", [(c, k) for c in ["make", "export-lm-eval", "export-hf", "report"]
                                          for k in DATA_OUT_CASES if (c, k) != ("report", "not-a-dataset")])
def test_bad_output_path(tmp_path, case, command, dataset_dir, finished_run):
    out = tmp_path / "out"
    if case == "file":
        write(out, "x")
    elif case == "under-file":
        write(out, "x")
        out = out / "sub"
    elif case == "not-a-dataset":
        out.mkdir()
        write(out / "notes.txt", "mine")
    else:
        out = tmp_path / ("o" * 300)
    argv = {"make": ["data", "make", "simple_reversals", "--out", out, "--set", "n_facts=3"],
            "export-lm-eval": ["data", "export", dataset_dir, "--to", "lm-eval", out],
            "export-hf": ["data", "export", dataset_dir, "--to", "hf", out],
            "report": ["report", finished_run, "--out", out]}[command]
    check_case(tmp_path, argv, None)


# ------------------------------------------------------------------------------------------ report input

def _run_copy(finished_run: Path, tmp: Path) -> Path:
    r = tmp / "run"
    shutil.copytree(finished_run, r)
    for f in ("report.md", "report.html"):
        (r / f).unlink(missing_ok=True)
    shutil.rmtree(r / "figures", ignore_errors=True)
    return r


REPORT_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("results-missing", lambda r: (r / "results.jsonl").unlink(), "results.jsonl"),
    ("results-bad-json", lambda r: (r / "results.jsonl").write_text("{nope}\n{}\n"), "results.jsonl"),
    ("results-correct-no", _edit_jsonl("results.jsonl", lambda rows: [{**rows[0], "correct": "no"}] + rows[1:]), "'correct'"),
    ("results-correct-int", _edit_jsonl("results.jsonl", lambda rows: [{**rows[0], "correct": 1}] + rows[1:]), "'correct'"),
    ("results-missing-field", _drop("results.jsonl", "split"), "'split'"),
    ("results-not-object", _edit_jsonl("results.jsonl", lambda rows: ["[]"] + rows), "results.jsonl"),
    ("results-latin1", _raw("results.jsonl", '{"cell": "\u00e9"}\n'.encode("latin-1")), "not UTF-8"),
    ("results-deep", _edit_jsonl("results.jsonl", lambda rows: ["[" * 3000 + "]" * 3000] + rows), "nested"),
    ("results-folder", _as_dir("results.jsonl"), "results.jsonl"),
    ("cells-bad-json", _raw("cells.jsonl", b"{\n{}\n"), "cells.jsonl"),
    ("cells-no-cell", _raw("cells.jsonl", b"{}\n"), "'cell'"),
    ("config-bad-yaml", _raw("config.yaml", b"name: [\n"), "config.yaml"),
    ("config-list", _raw("config.yaml", b"- 1\n"), "mapping"),
    ("config-utf16", _raw("config.yaml", "name: t\n".encode("utf-16")), "UTF-16"),
    ("empty-run", lambda r: _raw("results.jsonl", b"")(r) or _raw("cells.jsonl", b"")(r),
     "no finished cell yet (0 of 1), nothing to report"),
    ("rows-gone", _raw("results.jsonl", b""), "nothing to report"),
    ("report-md-is-a-folder", lambda r: (r / "report.md").mkdir(), "report.md: it is a folder"),
    ("figures-is-a-file", _raw("figures", b"mine"), "figures: it is not a folder"),
]


@pytest.mark.parametrize("case", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_bad_run_folder_for_report(tmp_path, case, finished_run):
    _, edit, expect = case
    r = _run_copy(finished_run, tmp_path)
    edit(r)
    check_case(tmp_path, ["report", r], expect)


def test_a_report_that_cannot_finish_leaves_the_old_one_and_no_new_file(tmp_path, finished_run, monkeypatch):
    """The last move (report.md) fails: what was moved before it is put back."""
    from genmodes import io as gio

    r = _run_copy(finished_run, tmp_path)
    rc, _, err = invoke(["report", r])
    assert rc == 0, err
    (r / "drilldown.html").unlink()  # a page the old report lacked: the failed one must not add it
    before = {p: p.read_bytes() for p in r.rglob("*") if p.is_file()}
    real = os.replace

    def full_at_the_end(src, dst, *a, **kw):
        # moving the new report.md into place (not writing it in the staging folder, nor putting back the old)
        if Path(dst) == r / "report.md" and Path(src).parent.name.startswith(".report.tmp-"):
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(gio.os, "replace", full_at_the_end)
    check_case(tmp_path, ["report", r], "no space left")
    assert {p: p.read_bytes() for p in r.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------ filesystems

@pytest.fixture
def small_mount(tmp_path):
    """A 64 KB tmpfs (needs root and mount permission); unmounted afterwards."""
    mnt = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}); CI runs as root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _remount_ro(mnt: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")


def _fill(mnt: Path, room: int = 8192) -> None:
    """Fill the mount, then free ``room`` bytes: enough to create a folder, not to write data."""
    (mnt / "room").write_bytes(b"r" * room)
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    (mnt / "room").unlink()


FS_COMMANDS = ["make", "export-lm-eval", "export-hf", "run", "report"]


def _fs_argv(command: str, out: Path, tmp: Path, dataset_dir: Path, finished_run: Path) -> list[Any]:
    cfg = write(tmp / "c.yaml", yaml.safe_dump(base_config()))
    return {"make": ["data", "make", "simple_reversals", "--out", out, "--set", "n_facts=40"],
            "export-lm-eval": ["data", "export", dataset_dir, "--to", "lm-eval", out],
            "export-hf": ["data", "export", dataset_dir, "--to", "hf", out],
            "run": ["run", cfg, "--out", out],
            "report": ["report", finished_run, "--out", out]}[command]


@pytest.mark.parametrize("command", FS_COMMANDS)
def test_read_only_folder(tmp_path, small_mount, command, dataset_dir, finished_run):
    _remount_ro(small_mount)
    argv = _fs_argv(command, small_mount / "out", tmp_path, dataset_dir, finished_run)
    check_case(tmp_path, argv, "read-only file system")


@pytest.mark.parametrize("command", FS_COMMANDS)
def test_full_disk(tmp_path, small_mount, command, dataset_dir, finished_run):
    _fill(small_mount)
    argv = _fs_argv(command, small_mount / "out", tmp_path, dataset_dir, finished_run)
    # a run may leave its folder (config, lock) to resume in once there is room; nothing half-written
    line = check_case(tmp_path, argv, None, allowed=(os.path.relpath(small_mount / "out", tmp_path),)
                      if command == "run" else ())
    assert "no space left" in line.lower() or "cannot" in line.lower()
    leftovers = [p for p in snapshot(small_mount) if ".tmp-" in p]
    assert not leftovers, leftovers


def test_finished_run_reads_from_read_only_mount(tmp_path, small_mount, finished_run):
    """Reporting (into another folder) and rerunning a finished run change nothing: they work read-only."""
    shutil.copytree(finished_run, small_mount / "run", ignore=shutil.ignore_patterns("figures", "report.*"))
    _remount_ro(small_mount)
    rc, _, err = invoke(["report", small_mount / "run", "--out", tmp_path / "rep"])
    assert rc == 0, err
    cfg = write(tmp_path / "c.yaml", yaml.safe_dump(base_config()))
    rc, out, err = invoke(["run", cfg, "--out", small_mount / "run", "--no-report"])
    assert rc == 0, err
    assert "pretrained" in out
