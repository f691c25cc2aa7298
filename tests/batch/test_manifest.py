"""Batch manifests and the ledger, read from real files (no envs, no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envmgr.batch.ledger import BatchLocked, Ledger
from envmgr.batch.manifest import Item, ManifestError, read_manifest


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
    ('{"input": "a.flac", "recipe": "karaoke"}\n', "names a recipe"),
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
