"""Run the generated bad-input corpus (corpus_cases.py) in-process through ``odkit.cli.main``.

Every case must: exit 2; print exactly one stderr line (cases that skip items may print per-item
``warning:`` lines before it), starting ``odkit <command>: error:``, with no traceback and no Python object
repr; leave the tmp folder exactly as it was after the inputs were written (nothing in the output location,
nothing written anywhere else in it); and never show the sentinel's content in any output.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from corpus_cases import CASES, SENTINEL, Case, Workspace

from odkit.cli import main


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = "link" if os.path.islink(p) else "dir" if os.path.isdir(p) else "file"
            out[os.path.relpath(p, root)] = (kind, st.st_size if kind == "file" else 0,
                                             st.st_mtime_ns if kind == "file" else 0)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ODKIT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path)
    argv = [str(a) for a in case.build(ws)]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    lines = err.splitlines()
    if case.warnings_ok:
        lines = [ln for ln in lines if not ln.startswith("warning: ")]
    assert rc == 2, f"exit {rc}\n{err}"
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("odkit ") and "error:" in lines[0], err
    assert "Traceback" not in err and "object at 0x" not in err, err
    if case.needle:
        assert case.needle in err, err
    assert SENTINEL not in out + err
    assert _snapshot(tmp_path) == before, "the command wrote, changed or left files"
