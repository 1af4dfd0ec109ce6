"""odkit.checkpoints: folder layout, atomic save, retention, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from odkit import checkpoints as ck
from odkit.errors import OdkitError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_save_list_load_roundtrip(tmp_path: Path) -> None:
    m = _model()
    ema = {k: v + 1 for k, v in m.state_dict().items()}
    state = {"step": 5, "optimizer": {"state": {}, "param_groups": []}, "rng": torch.get_rng_state()}
    c = ck.save_checkpoint(tmp_path, 5, m.state_dict(), ema_state=ema, train_state=state)
    assert c.path == tmp_path / "ckpt-5"
    assert sorted(p.name for p in c.path.iterdir()) == ["ema.safetensors", "meta.json", "model.safetensors", "train_state.pt"]
    meta = json.loads((c.path / "meta.json").read_text())
    assert meta["step"] == 5 and meta["complete"] is True
    assert (tmp_path / "checkpoint").read_text().splitlines()[0] == 'model_checkpoint_path: "ckpt-5"'

    m2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    got = ck.load_weights(m2, tmp_path)  # model dir -> latest
    assert got.step == 5
    for k, v in m.state_dict().items():
        assert torch.equal(m2.state_dict()[k], v)
    ck.load_weights(m2, c.path, use_ema=True)
    assert torch.allclose(m2[0].weight, m[0].weight + 1)
    ts = ck.load_train_state(c.path)
    assert ts["step"] == 5 and torch.equal(ts["rng"], state["rng"])


def test_retention_and_index(tmp_path: Path) -> None:
    m = _model()
    for step in range(1, 11):
        ck.save_checkpoint(tmp_path, step * 10, m.state_dict(), keep=3)
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [80, 90, 100]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ckpt-")) == ["ckpt-100", "ckpt-80", "ckpt-90"]
    lines = (tmp_path / "checkpoint").read_text().splitlines()
    assert lines == [
        'model_checkpoint_path: "ckpt-100"',
        'all_model_checkpoint_paths: "ckpt-80"',
        'all_model_checkpoint_paths: "ckpt-90"',
        'all_model_checkpoint_paths: "ckpt-100"',
    ]
    assert ck.latest_checkpoint(tmp_path).step == 100  # type: ignore[union-attr]


def test_incomplete_folders_are_ignored(tmp_path: Path) -> None:
    m = _model()
    ck.save_checkpoint(tmp_path, 1, m.state_dict())
    # a crash mid-save leaves a temp folder, or a folder without a complete meta.json
    (tmp_path / ".ckpt-2.tmp").mkdir()
    bad = tmp_path / "ckpt-3"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"garbage")
    (bad / "meta.json").write_text('{"step": 3, "complete": false}')
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [1]
    with pytest.raises(OdkitError, match="checkpoint not found|no complete checkpoint"):
        ck.resolve_checkpoint(tmp_path / "ckpt-3" / "nope")
    ck.remove_stale_temporaries(tmp_path)
    assert not (tmp_path / ".ckpt-2.tmp").exists()


def test_mismatch_errors_are_one_line(tmp_path: Path) -> None:
    ck.save_checkpoint(tmp_path, 1, _model().state_dict())
    other = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    with pytest.raises(OdkitError, match=r"shape \(4, 3\) in the checkpoint but \(5, 3\)"):
        ck.load_weights(other, tmp_path)
    fewer = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(OdkitError, match="unexpected"):
        ck.load_weights(fewer, tmp_path)
    with pytest.raises(OdkitError, match="ema.safetensors not found"):
        ck.load_weights(_model(), tmp_path, use_ema=True)
    with pytest.raises(OdkitError, match="no complete checkpoint"):
        ck.load_weights(_model(), tmp_path / "..")


def test_corrupt_weights_file(tmp_path: Path) -> None:
    c = ck.save_checkpoint(tmp_path, 1, _model().state_dict())
    (c.path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(OdkitError, match="cannot read weights"):
        ck.load_weights(_model(), c.path)
    (c.path / "train_state.pt").write_bytes(b"not a zip")
    with pytest.raises(OdkitError, match="cannot read training state"):
        ck.load_train_state(c.path)


def test_resave_same_step_replaces(tmp_path: Path) -> None:
    m = _model()
    ck.save_checkpoint(tmp_path, 4, m.state_dict())
    with torch.no_grad():
        m[0].weight.fill_(3.0)
    ck.save_checkpoint(tmp_path, 4, m.state_dict())
    m2 = _model()
    ck.load_weights(m2, tmp_path)
    assert torch.all(m2[0].weight == 3.0)
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [4]
