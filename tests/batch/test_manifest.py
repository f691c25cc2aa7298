"""Batch manifests, the ledger and the options checked before anything starts, with real files (no envs, no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envmgr.batch.ledger import BatchLocked, Ledger
from envmgr.batch.manifest import Item, ManifestError, read_manifest
from tests.support.cli import run_cli


def test_recipe_items_from_a_row_or_from_r(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.jsonl").write_text('{"input": "a.flac", "recipe": "karaoke"}\n'
                                              '{"input": "a.flac", "recipe": "mine.json"}\n'
                                              '{"input": "a.flac", "model": "x"}\n{"input": "b.flac"}\n')
    (tmp_path / "sub" / "m.csv").write_text("input,model,recipe\na.flac,,karaoke\na.flac,,mine.json\na.flac,x,\n"
                                            "b.flac,,\n")
    sub = tmp_path / "sub"
    want = [Item(sub / "a.flac", None, recipe="karaoke"), Item(sub / "a.flac", None, recipe=str(sub / "mine.json")),
            Item(sub / "a.flac", "x"), Item(sub / "b.flac", None, recipe="light")]
    assert read_manifest(sub / "m.jsonl", recipe="light") == want
    assert read_manifest(sub / "m.csv", recipe="light") == want
    assert read_manifest(sub / "m.jsonl", "dflt")[3] == Item(sub / "b.flac", "dflt")  # no -r: the model
    with pytest.raises(ManifestError) as caught:
        read_manifest(sub / "m.jsonl", "dflt", recipe="light")
    assert "-r/--recipe and -m/--model" in caught.value.message


def test_jsonl_csv_and_folder_give_the_same_items(tmp_path: Path) -> None:
    (tmp_path / "a.flac").write_bytes(b"")
    (tmp_path / "b.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "m.jsonl").write_text('{"input": "a.flac"}\n\n{"input": "b.wav", "model": "x", "runtime": "msst"}\n')
    (tmp_path / "m.csv").write_text("input,model,runtime\na.flac,,\nb.wav,x,msst\n")
    want = [Item(tmp_path / "a.flac", "dflt"), Item(tmp_path / "b.wav", "x", "msst")]
    assert read_manifest(tmp_path / "m.jsonl", "dflt") == want
    assert read_manifest(tmp_path / "m.csv", "dflt") == want
    assert read_manifest(tmp_path, "dflt") == [Item(tmp_path / "a.flac", "dflt"), Item(tmp_path / "b.wav", "dflt")]


@pytest.mark.parametrize("text, why", [
    ('{"input": "a.flac", "recipe": "karaoke", "model": "x"}\n', "names a recipe and a model or runtime"),
    ('{"input": "a.flac", "recipe": "karaoke", "runtime": "msst"}\n', "names a recipe and a model or runtime"),
    ('{"input": "a.flac", "recipe": "k"}\n{"input": "a.flac", "recipe": "k"}\n', "item 2 repeats item 1"),
    ('{"input": "a.flac", "modle": "x"}\n', "unknown field(s) modle"),
    ('{"model": "x"}\n', "has no `input`"),
    ('["a.flac"]\n', "not a JSON object"),
    ('{"input": "a.flac"}\n{"input": "a.flac"}\n', "item 2 repeats item 1"),
])
def test_a_bad_manifest_is_refused_naming_the_item(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert why in caught.value.message and caught.value.code == "E_MANIFEST_INVALID"


def test_the_ledger_keeps_whole_lines_and_checks_the_stems_are_there(tmp_path: Path) -> None:
    stem = tmp_path / "s.flac"
    stem.write_bytes(b"x")
    with Ledger(tmp_path) as ledger:
        ledger.append({"key": "a", "status": "done", "stems": [str(stem)]})
        ledger.append({"key": "b", "status": "done", "stems": [str(tmp_path / "gone.flac")]})
        ledger.append({"key": "c", "status": "failed", "code": "E_JOB"})
        with pytest.raises(BatchLocked):
            Ledger(tmp_path).open()  # one driver per output dir
    with open(tmp_path / ".stemsep-batch" / "ledger.jsonl", "a") as fh:
        fh.write('{"key": "d", "status": "do')  # what a killed driver can leave
    assert Ledger(tmp_path).done() == {"a"}


def test_the_cli_starts_without_the_batch_code_or_ray() -> None:
    code = ("import sys, envmgr.cli.main; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'envmgr.batch'))))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize("make, why", [
    (lambda tmp: tmp / "missing" / "python", "no such file"),
    (lambda tmp: tmp, "not a file"),
    (lambda tmp: (tmp / "python").write_text("#!/bin/sh\n") and tmp / "python", "not executable"),
])
def test_a_py_executable_that_cannot_run_is_refused_before_anything_starts(tmp_path: Path, make, why) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.wav").write_bytes(b"")
    out = tmp_path / "out"
    proc = run_cli("batch", tmp_path / "in", "-o", out, "--engine", "ray", "--py-executable", make(tmp_path),
                   "--json", env={"STEMSEP_HOME": str(tmp_path / "home")})
    end = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 2 and end["type"] == "exit" and end["code"] == "E_USAGE", proc.stdout + proc.stderr
    assert why in end["why"] and "--py-executable" in end["message"]
    assert not out.exists()  # refused before the ledger, Ray or any env


def test_py_executable_is_refused_with_the_local_engine(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    proc = run_cli("batch", tmp_path, "-o", tmp_path / "out", "--py-executable", sys.executable,
                   env={"STEMSEP_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2 and "--py-executable is for --engine ray" in proc.stderr
