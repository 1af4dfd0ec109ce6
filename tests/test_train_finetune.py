"""Fine-tuning sources and types, freezing regexes, and the torchvision:// download path (local cache only)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_train_fakes import FakeDetector, loader_fn, model_fn, pipeline

from odkit import checkpoints as ck
from odkit.errors import ConfigError, OdkitError, UnsupportedError
from odkit.training.finetune import (
    apply_fine_tune,
    apply_trainable_filters,
    load_fine_tune,
    read_source_state_dict,
)
from odkit.workflows.train import train


def _cfg(path: str, kind: str = ""):  # noqa: ANN202
    return pipeline(extra=f'fine_tune_checkpoint: "{path}" ' + (f'fine_tune_checkpoint_type: "{kind}"' if kind else ""))


def test_detection_from_odkit_checkpoint_restores_feature_extractor_only(tmp_path: Path) -> None:
    """TF's meaning: the feature extractor is restored, every head stays freshly initialised."""
    torch.manual_seed(1)
    src = FakeDetector(num_classes=5)
    ck.save_checkpoint(tmp_path / "src", 10, src.state_dict())
    torch.manual_seed(2)
    dst = FakeDetector(num_classes=3)
    fresh_box = dst.box_head.weight.detach().clone()
    fresh_cls = dst.cls_head.weight.detach().clone()
    report = apply_fine_tune(dst, _cfg(str(tmp_path / "src"), "detection").train_config)
    assert report is not None
    assert torch.equal(dst.backbone[0].weight, src.backbone[0].weight)
    assert torch.equal(dst.backbone[1].running_var, src.backbone[1].running_var)
    assert torch.equal(dst.box_head.weight, fresh_box) and not torch.equal(dst.box_head.weight, src.box_head.weight)
    assert torch.equal(dst.cls_head.weight, fresh_cls)
    assert sorted(report.loaded) == sorted(k for k in dst.state_dict() if k.startswith("backbone."))
    assert sorted(report.fresh) == ["box_head.bias", "box_head.weight", "cls_head.bias", "cls_head.weight"]
    assert sorted(n for n, _ in report.skipped) == ["box_head.bias", "box_head.weight", "cls_head.bias",
                                                    "cls_head.weight"]
    text = report.summary(details="D/fine_tune_report.json")
    assert "restored 9 tensors (backbone.0.weight, backbone.0.bias, backbone.1.weight, ...)" in text
    assert "left fresh 4" in text and "skipped 4 checkpoint tensors" in text and "D/fine_tune_report.json" in text
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["left_fresh"] == report.fresh and len(data["restored"]) == 9 and len(data["skipped"]) == 4


def test_detection_load_all_detection_checkpoint_vars_loads_every_match(tmp_path: Path) -> None:
    """TF1's load_all_detection_checkpoint_vars: every tensor whose name and shape match, heads included."""
    torch.manual_seed(1)
    src = FakeDetector(num_classes=5)
    ck.save_checkpoint(tmp_path / "src", 10, src.state_dict())
    dst = FakeDetector(num_classes=3)
    fresh_cls = dst.cls_head.weight.detach().clone()
    cfg = _cfg(str(tmp_path / "src"), "detection")
    cfg.train_config.load_all_detection_checkpoint_vars = True
    report = apply_fine_tune(dst, cfg.train_config)
    assert report is not None
    assert torch.equal(dst.box_head.weight, src.box_head.weight)
    assert torch.equal(dst.cls_head.weight, fresh_cls)  # 6 vs 4 outputs: skipped
    assert sorted(report.fresh) == ["cls_head.bias", "cls_head.weight"]
    assert [why for n, why in report.skipped if n == "cls_head.weight"] == ["shape (6, 8) vs (4, 8) in the model"]


def test_detection_feature_extractor_shape_mismatch_is_one_line_error(tmp_path: Path) -> None:
    src = FakeDetector()
    state = src.state_dict()
    state["backbone.0.weight"] = torch.zeros(8, 3, 5, 5)
    ck.save_checkpoint(tmp_path / "src", 1, state)
    with pytest.raises(OdkitError, match=r"backbone\.0\.weight has shape \(8, 3, 5, 5\) in the checkpoint") as ei:
        apply_fine_tune(FakeDetector(), _cfg(str(tmp_path / "src"), "detection").train_config)
    assert "\n" not in str(ei.value)
    del state["backbone.0.weight"]
    ck.save_checkpoint(tmp_path / "gap", 1, state)
    with pytest.raises(OdkitError, match="1 tensor.s. of the feature extractor are not in it .e.g. 'backbone.0.weight'"):
        apply_fine_tune(FakeDetector(), _cfg(str(tmp_path / "gap"), "detection").train_config)


def test_classification_loads_backbone_only_from_torchvision_style_names(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = FakeDetector()
    # a classification state dict: backbone-relative names (as torchvision) plus a classifier
    state = {k.removeprefix("backbone."): v for k, v in src.state_dict().items() if k.startswith("backbone.")}
    state["fc.weight"] = torch.zeros(10, 8)
    torch.save({"state_dict": state}, tmp_path / "cls.pth")
    torch.manual_seed(2)
    dst = FakeDetector()
    head = dst.box_head.weight.detach().clone()
    report = apply_fine_tune(dst, _cfg(str(tmp_path / "cls.pth"), "classification").train_config)
    assert report is not None and report.skipped == [("fc.weight", "outside the restored part (backbone: backbone)")]
    assert torch.equal(dst.backbone[0].weight, src.backbone[0].weight)
    assert torch.equal(dst.backbone[1].running_mean, src.backbone[1].running_mean)
    assert torch.equal(dst.box_head.weight, head)
    # from_detection_checkpoint false and no type: classification (TF's rule)
    save_file(state, str(tmp_path / "cls.safetensors"))
    report2 = apply_fine_tune(FakeDetector(), _cfg(str(tmp_path / "cls.safetensors")).train_config)
    assert report2 is not None and report2.kind == "classification" and len(report2.loaded) == len(state) - 1


def test_full_requires_exact_match(tmp_path: Path) -> None:
    ck.save_checkpoint(tmp_path / "src", 1, FakeDetector(num_classes=5).state_dict())
    with pytest.raises(OdkitError, match=r"full fine-tune checkpoint does not match the model: cls_head.weight has shape \(6, 8\)"):
        apply_fine_tune(FakeDetector(), _cfg(str(tmp_path / "src"), "full").train_config)
    ck.save_checkpoint(tmp_path / "ok", 1, FakeDetector().state_dict())
    rep = apply_fine_tune(FakeDetector(), _cfg(str(tmp_path / "ok"), "full").train_config)
    assert rep is not None and not rep.skipped and not rep.fresh


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_bad_sources_are_refused(tmp_path: Path) -> None:
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(OdkitError, match="only weights_only state dicts"):
        read_source_state_dict(str(tmp_path / "evil.pth"))
    (tmp_path / "ckpt-0.index").write_bytes(b"")
    with pytest.raises(UnsupportedError, match="a TensorFlow checkpoint has no odkit tensor names"):
        read_source_state_dict(str(tmp_path / "ckpt-0"))
    cfg = _cfg(str(tmp_path / "ckpt-0"), "detection")  # a truncated TF checkpoint: the reader's one-line error
    with pytest.raises(OdkitError, match="truncated index file"):
        apply_fine_tune(FakeDetector(), cfg.train_config, model_config=cfg.model)
    with pytest.raises(OdkitError, match="fine_tune_checkpoint not found"):
        read_source_state_dict(str(tmp_path / "nope.pth"))
    with pytest.raises(UnsupportedError, match="fine_tune_checkpoint_type 'weird'"):
        apply_fine_tune(FakeDetector(), _cfg(str(tmp_path / "x.pth"), "weird").train_config)
    torch.save({"a": torch.zeros(3)}, tmp_path / "unrelated.pth")
    with pytest.raises(OdkitError, match="no tensor of the fine-tune checkpoint matches"):
        load_fine_tune(FakeDetector(), read_source_state_dict(str(tmp_path / "unrelated.pth")), "detection")


def test_torchvision_weights_from_local_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import get_model_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(OdkitError, match="not in the local cache.*--allow_download"):
        read_source_state_dict("torchvision://mobilenet_v2")
    with pytest.raises(ConfigError, match="unknown torchvision model"):
        read_source_state_dict("torchvision://no_such_net")
    # what a download would leave in the hub cache: the URL's file name under hub/checkpoints
    url = get_model_weights("mobilenet_v2").DEFAULT.url
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"features.0.0.weight": torch.ones(2, 3, 3, 3)}, cache / os.path.basename(url))
    state = read_source_state_dict("torchvision://mobilenet_v2", allow_download=False)
    assert torch.equal(state["features.0.0.weight"], torch.ones(2, 3, 3, 3))


def test_trainable_filters_follow_slim_filter_variables() -> None:
    m = FakeDetector()
    frozen = apply_trainable_filters(m, update_trainable_variables=["head"], freeze_variables=[r"cls_head\.bias"])
    trainable = sorted(n for n, p in m.named_parameters() if p.requires_grad)
    assert trainable == ["box_head.bias", "box_head.weight", "cls_head.weight"]
    assert "backbone.0.weight" in frozen and "cls_head.bias" in frozen
    with pytest.raises(ConfigError, match="bad regular expression"):
        apply_trainable_filters(FakeDetector(), freeze_variables=["("])


def test_train_fine_tunes_only_on_fresh_start(tmp_path: Path) -> None:
    torch.manual_seed(7)
    src = FakeDetector()
    ck.save_checkpoint(tmp_path / "src", 3, src.state_dict())
    cfg = _cfg(str(tmp_path / "src"), "detection")
    cfg.train_config.num_steps = 1
    kw = {"model_fn": model_fn(), "loader_fn": loader_fn, "allow_unsupported": True, "device": "cpu",
          "verbose": False, "checkpoint_every_n": 1}
    cfg.train_config.optimizer.momentum_optimizer.learning_rate.constant_learning_rate.learning_rate = 0.0
    train(model_dir=tmp_path / "run", config=cfg, **kw)
    w = ck.read_state_dict(tmp_path / "run")
    assert torch.equal(w["backbone.0.weight"], src.backbone[0].weight)  # lr 0: still the fine-tune weights
    assert not torch.equal(w["box_head.weight"], src.box_head.weight)  # detection: heads stay fresh
    report = json.loads((tmp_path / "run" / "fine_tune_report.json").read_text())
    assert report["fine_tune_checkpoint_type"] == "detection" and "box_head.weight" in report["left_fresh"]


def test_resnet_stem_maps_to_torchvision_names() -> None:
    from torch import nn

    class Net(nn.Module):
        backbone_param_prefixes = ("feature_extractor.backbone.",)

        def __init__(self) -> None:
            super().__init__()
            self.feature_extractor = nn.Module()
            self.feature_extractor.backbone = nn.Module()
            self.feature_extractor.backbone.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))

    tv = {"conv1.weight": torch.full((4, 3, 3, 3), 2.0), "bn1.weight": torch.full((4,), 3.0),
          "bn1.bias": torch.zeros(4), "bn1.running_mean": torch.ones(4), "bn1.running_var": torch.ones(4),
          "bn1.num_batches_tracked": torch.tensor(5), "fc.weight": torch.zeros(2, 4)}
    net = Net()
    rep = load_fine_tune(net, tv, "classification", "resnet.pth")
    assert rep.fresh == ["feature_extractor.backbone.stem.0.bias"] and [n for n, _ in rep.skipped] == ["fc.weight"]
    assert torch.all(net.feature_extractor.backbone.stem[0].weight == 2.0)
    assert torch.all(net.feature_extractor.backbone.stem[1].weight == 3.0)
