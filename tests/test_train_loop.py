"""The training loop with a tiny fake model: checkpoints, resume, EMA, NaN stop, TensorBoard, loss.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_fakes import FakeDetector, loader_fn, model_fn, pipeline

from odkit import checkpoints as ck
from odkit.errors import OdkitError
from odkit.workflows.train import train


def _train(model_dir: Path, config, **kwargs):  # noqa: ANN001, ANN202
    kw = {"model_fn": model_fn(), "loader_fn": loader_fn, "allow_unsupported": True, "device": "cpu",
          "log_every_n": 2, "checkpoint_every_n": 3, "verbose": False, "num_workers": 0}
    kw.update(kwargs)
    return train(model_dir=model_dir, config=config, **kw)


def _weights(path: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    return ck.read_state_dict(path, use_ema=ema)


def test_train_writes_checkpoints_config_events_and_plot(tmp_path: Path) -> None:
    res = _train(tmp_path, pipeline(num_steps=6))
    assert res.step == 6 and res.checkpoint == tmp_path / "ckpt-6"
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [3, 6]
    assert set(res.losses) == {"Loss/localization_loss", "Loss/classification_loss", "Loss/regularization_loss",
                               "Loss/total_loss"}
    parts = res.losses["Loss/localization_loss"] + res.losses["Loss/classification_loss"]
    assert res.losses["Loss/total_loss"] == pytest.approx(parts + res.losses["Loss/regularization_loss"], rel=1e-5)
    assert "batch_size: 4" in (tmp_path / "pipeline.config").read_text()
    assert (tmp_path / "train" / "loss.png").stat().st_size > 1000
    meta = json.loads((tmp_path / "ckpt-6" / "meta.json").read_text())
    assert meta["global_batch_size"] == 4 and meta["complete"] is True

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("Loss/classification_loss", "Loss/localization_loss", "Loss/regularization_loss",
                "Loss/total_loss", "learning_rate"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("Loss/total_loss")] == [2, 3, 4, 6]
    assert acc.Scalars("learning_rate")[0].value == pytest.approx(0.05)
    assert "train_input_images" in tags["images"]

    # the weights moved, and training again with the same command is a no-op
    again = _train(tmp_path, pipeline(num_steps=6))
    assert again.step == 6 and again.resumed_from == 6


class _PlainIterable:
    """Not a DataLoader: resume falls back to skipping batches; set_epoch reaches the sampler."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.inner = loader_fn(*args, **kwargs)
        self.sampler = self.inner.sampler

    def __iter__(self):  # noqa: ANN204
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


# 6 batches per epoch: resume mid-epoch, and exactly at the epoch boundary
@pytest.mark.parametrize(("loader", "resume_at"), [(loader_fn, 4), (_PlainIterable, 6)],
                         ids=["dataloader-mid-epoch", "iterable-epoch-boundary"])
def test_resume_matches_uninterrupted_run(tmp_path: Path, loader, resume_at: int) -> None:  # noqa: ANN001
    opt = ("adam_optimizer { learning_rate { exponential_decay_learning_rate { initial_learning_rate: 0.02 "
           "decay_steps: 3 decay_factor: 0.5 } } }")
    cfg = pipeline(num_steps=8, optimizer=opt, ema=True, extra="gradient_clipping_by_norm: 1.0")
    full = tmp_path / "full"
    _train(full, cfg, seed=3, loader_fn=loader)
    part = tmp_path / "part"
    r1 = _train(part, cfg, seed=3, num_train_steps=resume_at, checkpoint_every_n=4, loader_fn=loader)
    assert r1.step == resume_at
    r2 = _train(part, cfg, seed=3, checkpoint_every_n=4, loader_fn=loader)
    assert r2.resumed_from == resume_at and r2.step == 8
    a, b = _weights(full / "ckpt-8"), _weights(part / "ckpt-8")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ea, eb = _weights(full / "ckpt-8", ema=True), _weights(part / "ckpt-8", ema=True)
    for k in ea:
        assert torch.equal(ea[k], eb[k]), k
    # EMA differs from the raw weights, and the history survives the resume
    assert not torch.equal(ea["box_head.weight"], a["box_head.weight"])
    hist = ck.load_train_state(part / "ckpt-8")["loss_history"]
    assert hist[:, 0].tolist() == [2.0, 4.0, 6.0, 8.0]


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(OdkitError, match=r"NaN/Inf at step 5 \(Loss/localization_loss"):
        _train(tmp_path, pipeline(num_steps=10), model_fn=model_fn(nan_at_call=5), log_every_n=4,
               checkpoint_every_n=3)
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [3]
    w = _weights(tmp_path / "ckpt-3")
    assert all(torch.isfinite(v).all() for v in w.values())


def test_freeze_and_schedule_applied(tmp_path: Path) -> None:
    init = FakeDetector()
    torch.manual_seed(0)
    init = FakeDetector()
    cfg = pipeline(num_steps=3, extra='freeze_variables: "^backbone\\\\." ')
    _train(tmp_path, cfg, checkpoint_every_n=3)
    w = _weights(tmp_path / "ckpt-3")
    for k, v in init.state_dict().items():
        if k.startswith("backbone.") and "running" not in k and "num_batches" not in k:
            assert torch.equal(w[k], v), k
    assert not torch.equal(w["cls_head.weight"], init.state_dict()["cls_head.weight"])


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(OdkitError, match="multiple of the number of processes|batch_size"):
        _train(tmp_path, pipeline(batch_size=0))
    with pytest.raises(OdkitError, match="--checkpoint_every_n must be > 0"):
        _train(tmp_path, pipeline(), checkpoint_every_n=0)
    cfg = pipeline()
    cfg.train_config.optimizer.ClearField("momentum_optimizer")
    with pytest.raises(OdkitError, match="optimizer is not set"):
        _train(tmp_path, cfg)
    assert not list(tmp_path.glob("ckpt-*"))


def test_progress_line_format() -> None:
    from odkit.training.progress import Progress, format_duration

    p = Progress(0, 100, 8)
    line = p.line(10, {"Loss/total_loss": 1.5, "Loss/classification_loss": 1.0}, 0.004, 12.34)
    assert line.startswith("step 10/100  loss 1.5000 (classification 1.0000)  lr 0.004  12.3 img/s  ETA ")
    assert format_duration(3725) == "1h02m05s" and format_duration(65) == "1m05s"


def test_ema_decay_ramp() -> None:
    from odkit.training.ema import ModelEMA

    m = torch.nn.Linear(2, 1)
    ema = ModelEMA(m, decay=0.99)
    assert ema.current_decay() == pytest.approx(0.1)  # (1+0)/(10+0)
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.shadow["weight"], w0 * 0.1 + (w0 + 1.0) * 0.9)
    ema.num_updates = 10**6
    assert ema.current_decay() == pytest.approx(0.99)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(tmp_path: Path, precision: str) -> None:
    res = _train(tmp_path, pipeline(num_steps=2), precision=precision, checkpoint_every_n=2)
    assert res.step == 2 and all(v == v for v in res.losses.values())
    state = ck.load_train_state(tmp_path / "ckpt-2")
    assert bool(state["scaler"]) == (precision == "fp16")  # GradScaler state only for fp16
    w = _weights(tmp_path / "ckpt-2")
    assert w["box_head.weight"].dtype == torch.float32  # master weights stay float32


def test_resolve_precision() -> None:
    from odkit.training.precision import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == "fp32"
    assert resolve_precision("auto", cpu, use_bfloat16=True).dtype == torch.bfloat16
    assert resolve_precision("fp16", cpu).use_scaler
    with pytest.raises(OdkitError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def test_eval_every_n_calls_the_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import odkit.workflows.evaluate as evaluator

    calls = []

    def fake_eval(config, ckpt_path, model_dir, **kwargs):  # noqa: ANN001, ANN003, ANN202
        calls.append((Path(ckpt_path).name, kwargs.get("device")))
        return {"DetectionBoxes_Precision/mAP": 0.5}

    monkeypatch.setattr(evaluator, "evaluate_checkpoint", fake_eval)
    _train(tmp_path, pipeline(num_steps=5), eval_every_n=2, checkpoint_every_n=100)
    assert calls == [("ckpt-2", "cpu"), ("ckpt-4", "cpu"), ("ckpt-5", "cpu")]


def test_batch_grid_draws_groundtruth_boxes() -> None:
    from odkit.training.summaries import batch_grid

    batch = {
        "images": torch.zeros(2, 3, 16, 16, dtype=torch.uint8),
        "groundtruth": {"boxes": torch.tensor([[[0.25, 0.25, 0.75, 0.75]], [[0.0, 0.0, 1.0, 1.0]]]),
                        "classes": torch.tensor([[1], [0]])},
    }
    grid = batch_grid(batch)
    assert grid is not None and grid.shape == (3, 20, 38)  # 2 images side by side, padding 2
    first, second = grid[:, 2:18, 2:18], grid[:, 2:18, 20:36]
    yellow = (first[0] == 255) & (first[1] == 255) & (first[2] == 0)
    assert yellow[4, 4:12].all() and not yellow[8, 8]  # box outline at y=4 (0.25 * 16), interior untouched
    assert int(second.sum()) == 0  # padding entry (class 0) is not drawn


def test_resume_with_a_different_optimizer_is_a_clear_error(tmp_path: Path) -> None:
    _train(tmp_path, pipeline(num_steps=2), checkpoint_every_n=2)
    adam = "adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.01 } } }"
    with pytest.raises(OdkitError, match="trained with SGD, the config now asks for Adam"):
        _train(tmp_path, pipeline(num_steps=4, optimizer=adam))
    # freezing variables changes the parameter groups
    with pytest.raises(OdkitError, match="cannot resume the optimizer state"):
        _train(tmp_path, pipeline(num_steps=4, extra='freeze_variables: "^backbone"'))
    assert [c.step for c in ck.list_checkpoints(tmp_path)] == [2]


def test_compile_on_cpu_compiles_the_focal_kernels_not_the_model(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`--compile` on the CPU: the focal-loss kernels (measured faster), never torch.compile of the step (measured
    slower than eager there); the run trains as usual."""
    import odkit.training.trainer as trainer_mod

    calls: list[str] = []
    monkeypatch.setattr(trainer_mod, "compile_focal_kernels", lambda: calls.append("focal"))
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append("model") or a[0])
    res = _train(tmp_path, pipeline(num_steps=2), compile=True, checkpoint_every_n=2)
    assert res.step == 2 and calls == ["focal"]
