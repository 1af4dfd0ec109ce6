"""The training loop (TF OD API model_lib_v2.train_loop semantics on PyTorch).

One step: lr = schedule(step); losses = model.loss(model.predict(model.preprocess(images)), ...);
total = sum(losses) (+ regularization when add_regularization_loss); backward; clip by global norm;
optimizer step; EMA update. Host syncs happen only every ``log_every_n`` steps and before checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odkit import checkpoints as ckpts
from odkit.devices import resolve_device
from odkit.errors import ConfigError, DataError, OdkitError
from odkit.fileio import atomic_write_text
from odkit.runtime import apply_thread_plan, plan_threads
from odkit.training import data_position
from odkit.training.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, shutdown
from odkit.training.ema import ModelEMA
from odkit.training.finetune import FINE_TUNE_REPORT, apply_fine_tune, apply_trainable_filters
from odkit.training.optimizers import build_optimizer, set_learning_rate
from odkit.training.precision import Precision, resolve_precision
from odkit.training.progress import Progress, format_duration
from odkit.training.rng import capture_rng_state, restore_rng_state, seed_everything
from odkit.training.settings import train_settings

ModelFn = Callable[..., nn.Module]
LoaderFn = Callable[..., Iterable[dict[str, Any]]]
EvaluateFn = Callable[[Path, torch.device], None]


@dataclass
class TrainOptions:
    """Command-line level options (the pipeline.config holds the rest)."""

    model_dir: Path
    num_train_steps: int | None = None  # overrides train_config.num_steps
    checkpoint_every_n: int = 1000
    seed: int = 0
    precision: str = "auto"
    compile: bool = False
    device: str | None = None
    eval_every_n: int = 0
    num_workers: int | None = None
    log_every_n: int = 10
    keep_checkpoints: int = ckpts.DEFAULT_KEEP
    deterministic: bool = False
    allow_download: bool = False
    verbose: bool = True


@dataclass
class TrainResult:
    model_dir: Path
    step: int
    checkpoint: Path | None
    losses: dict[str, float] = field(default_factory=dict)  # mean over the last logging window
    images_per_sec: float = 0.0
    seconds: float = 0.0
    resumed_from: int | None = None


class _TrainStep(nn.Module):
    """preprocess + predict (under autocast) + loss (float32) in one forward, so DDP sees it."""

    def __init__(self, model: nn.Module, precision: Precision, add_regularization_loss: bool, channels_last: bool):
        super().__init__()
        self.model = model
        self.precision = precision
        self.add_regularization_loss = add_regularization_loss
        self.channels_last = channels_last

    def forward(
        self, images: torch.Tensor, groundtruth: dict[str, torch.Tensor], true_image_shapes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        m = self.model
        amp = (
            torch.autocast(device_type=images.device.type, dtype=self.precision.dtype)
            if self.precision.dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            x = m.preprocess(images)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pred = m.predict(x)
        if self.precision.dtype is not None:
            pred = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in pred.items()}
        losses = dict(m.loss(pred, groundtruth, true_image_shapes))
        if self.add_regularization_loss:
            losses["Loss/regularization_loss"] = m.regularization_loss().float()
        losses["Loss/total_loss"] = torch.stack([v.float() for v in losses.values()]).sum()
        return losses


def _to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    nb = device.type == "cuda"
    images = batch["images"].to(device, non_blocking=nb)
    gt = {k: v.to(device, non_blocking=nb) for k, v in batch["groundtruth"].items() if torch.is_tensor(v)}
    shapes = batch["true_image_shapes"].to(device, non_blocking=nb)
    return images, gt, shapes


def _pick_device(requested: str | None) -> torch.device:
    return resolve_device(requested)


def _write_pipeline_config(config: Any, path: Path) -> None:
    from google.protobuf import text_format

    atomic_write_text(path, text_format.MessageToString(config))


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: Any) -> None:
    """``optimizer.load_state_dict`` plus the checks torch leaves to the first step: every param group keeps
    the keys and value types of the optimizer built from the config (a crafted file fails here, as one line)."""
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    if not isinstance(state, dict) or not isinstance(state.get("param_groups"), list):
        raise ValueError("not an optimizer state dict")
    optimizer.load_state_dict(state)
    for want, got in zip(fresh, optimizer.param_groups):
        if set(want) != set(got) - {"params"}:
            raise ValueError(f"param group keys {sorted(set(got) - {'params'})} != {sorted(want)}")
        for k, v in want.items():
            if isinstance(v, (int, float, bool)) != isinstance(got[k], (int, float, bool)) or (
                    isinstance(v, tuple) and not isinstance(got[k], (tuple, list))):
                raise ValueError(f"param group value {k!r} has type {type(got[k]).__name__}")
    for s in optimizer.state.values():
        if not isinstance(s, dict) or not all(torch.is_tensor(x) or isinstance(x, (int, float)) for x in s.values()):
            raise ValueError("per-parameter state holds something other than tensors and numbers")


def _entries(folder: Path) -> set[str] | None:
    """Names in ``folder`` (None when it does not exist)."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return None
    except OSError:
        return set()


def _remove_new_entries(folder: Path, before: set[str] | None) -> None:
    """Remove what a failed run created in ``folder`` (and the folder itself if the run created it)."""
    import shutil

    for name in (_entries(folder) or set()) - (before or set()):
        p = folder / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    if before is None:
        with contextlib.suppress(OSError):
            folder.rmdir()


class BoxCheck:
    """Counts groundtruth boxes per class in the first ``num_batches`` batches of a run.

    Zero boxes in all of them is an error (a label map whose names match no record's class text, an empty
    label map, records without boxes); a class without boxes is a warning.
    """

    def __init__(self, num_classes: int, num_batches: int = 10) -> None:
        self.num_classes = int(num_classes)
        self.num_batches = num_batches
        self.seen = 0
        self.images = 0
        self.per_class = torch.zeros(max(self.num_classes, 0) + 1, dtype=torch.long)

    @property
    def done(self) -> bool:
        return self.seen >= self.num_batches

    def add(self, batch: dict[str, Any], log: Callable[[str], None], final: bool = False) -> None:
        gt = batch.get("groundtruth") if isinstance(batch, dict) else None
        if not isinstance(gt, dict) or "classes" not in gt or "num_boxes" not in gt:
            self.seen = self.num_batches  # a loader without groundtruth (test fakes): nothing to check
            return
        classes = gt["classes"].detach().to("cpu").reshape(-1).long()
        classes = classes[(classes > 0) & (classes <= self.num_classes)]
        self.per_class += torch.bincount(classes, minlength=self.per_class.numel())[: self.per_class.numel()]
        self.images += int(gt["num_boxes"].numel())
        self.seen += 1
        if self.done or final:
            self.verdict(log)

    def verdict(self, log: Callable[[str], None]) -> None:
        if int(self.per_class[1:].sum()) == 0:
            raise DataError(
                f"the first {self.seen} training batches ({self.images} images) hold 0 boxes; training would "
                "learn nothing",
                where="train_input_reader",
                hint="check that label_map_path's names match the records' image/object/class/text "
                     "(`odkit records inspect`), and that the records have boxes",
            )
        empty = [str(i) for i in range(1, self.num_classes + 1) if int(self.per_class[i]) == 0]
        if empty:
            log(f"warning: class id(s) {', '.join(empty[:20])}{' ...' if len(empty) > 20 else ''} have no boxes "
                f"in the first {self.seen} batches")


class Trainer:
    """Runs the training loop of a TrainEvalPipelineConfig; the caller (odkit.workflows.train) gives the model
    builder ``model_fn(model_config, is_training=True)``, the input loader builder ``loader_fn`` (the signature
    of odkit.inputs.build_input_loader) and, for --eval_every_n, ``evaluate_fn(checkpoint_path, device)``."""

    def __init__(
        self,
        config: Any,
        options: TrainOptions,
        model_fn: ModelFn,
        loader_fn: LoaderFn,
        evaluate_fn: EvaluateFn | None = None,
    ) -> None:
        self.config = config
        self.opts = options
        self.model_fn = model_fn
        self.loader_fn = loader_fn
        self.evaluate_fn = evaluate_fn
        self.model_dir = Path(options.model_dir)

    def log(self, text: str) -> None:
        if self.opts.verbose and self.dist.is_main:
            print(text, flush=True)

    # -- setup ---------------------------------------------------------------------------------------
    def _num_steps(self) -> int | None:
        n = self.opts.num_train_steps
        if n is None:
            n = train_settings(self.config.train_config).num_steps
        if n < 0:
            raise OdkitError(f"num_train_steps must be >= 0, got {n}", where="--num_train_steps")
        return n or None  # 0: train until interrupted, as TF

    def _check_options(self) -> None:
        o = self.opts
        flags = {"checkpoint_every_n": "checkpoint_every_n", "log_every_n": "log_every_n",
                 "keep_checkpoints": "checkpoint_max_to_keep"}
        for name, flag in flags.items():
            if getattr(o, name) <= 0:
                raise OdkitError(f"--{flag} must be > 0, got {getattr(o, name)}", where=f"--{flag}")
        if o.eval_every_n < 0:
            raise OdkitError("--eval_every_n must be >= 0", where="--eval_every_n")
        if not self.config.HasField("train_config"):
            raise ConfigError("the pipeline config has no train_config", where="train_config")
        if not self.config.HasField("train_input_reader"):
            raise ConfigError("the pipeline config has no train_input_reader", where="train_input_reader")
        if not self.config.train_config.optimizer.WhichOneof("optimizer"):
            raise ConfigError("train_config.optimizer is not set", where="train_config.optimizer")

    def run(self) -> TrainResult:
        self._check_options()
        device = _pick_device(self.opts.device)
        before = _entries(self.model_dir)
        self.dist: DistInfo = init_distributed(device.type)
        try:
            return self._run(device)
        except BaseException:
            # A run that fails before its first checkpoint leaves nothing behind (pipeline.config, events).
            if self.dist.is_main and not ckpts.list_checkpoints(self.model_dir):
                _remove_new_entries(self.model_dir, before)
            raise
        finally:
            shutdown(self.dist)

    def _run(self, device: torch.device) -> TrainResult:
        t_start = time.perf_counter()
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        tc = self.config.train_config
        ts = train_settings(tc)
        global_batch = ts.batch_size
        if global_batch <= 0 or global_batch % self.dist.world_size:
            raise ConfigError(
                f"batch_size {global_batch} must be a positive multiple of the number of processes "
                f"({self.dist.world_size})",
                where="train_config.batch_size",
            )
        per_rank_batch = global_batch // self.dist.world_size
        num_steps = self._num_steps()
        reader = self.config.train_input_reader
        threads = plan_threads(
            "train",
            device=device.type,
            workers=self.opts.num_workers,
            max_workers=int(reader.num_readers or 1),
        )
        apply_thread_plan(threads)
        self.threads = threads
        if self.opts.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = False
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        if self.dist.is_main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            ckpts.remove_stale_temporaries(self.model_dir)
        barrier(self.dist)
        seed_everything(self.opts.seed)
        ckpts.check_resumable(self.model_dir)
        model = self.model_fn(self.config.model, is_training=True)
        latest = ckpts.latest_checkpoint(self.model_dir)
        if latest is None:
            report = apply_fine_tune(model, ts, allow_download=self.opts.allow_download,
                                     model_config=self.config.model)
            if report is not None:
                details = self.model_dir / FINE_TUNE_REPORT
                if self.dist.is_main:
                    report.write_json(details)
                self.log(report.summary(details=str(details)))
        frozen = apply_trainable_filters(model, ts.update_trainable_variables, ts.freeze_variables)
        if frozen:
            self.log(f"frozen parameters: {len(frozen)} (e.g. {frozen[0]})")
        # NHWC: oneDNN on CPU and cuDNN on GPU run these convolutions and batch norms faster in it (measured:
        # SSD FPN-lite 320 train step -20% on one CPU thread, ResNet50 FPN 640 -10%)
        channels_last = device.type in ("cuda", "cpu")
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, schedule = build_optimizer(tc.optimizer, params)
        ema = ModelEMA(model, ts.moving_average_decay) if ts.use_moving_average else None
        precision = resolve_precision(self.opts.precision, device, ts.use_bfloat16)
        scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None

        step = 0
        history: list[list[float]] = []
        train_state: dict[str, Any] = {}
        if latest is not None:
            ckpts.load_weights(model, latest.path)
            train_state = ckpts.load_train_state(latest.path)
            step = int(train_state.get("step", latest.step))
            saved_opt = train_state.get("optimizer_type")
            if saved_opt and saved_opt != type(optimizer).__name__:
                raise OdkitError(
                    f"cannot resume: the checkpoint was trained with {saved_opt}, the config now asks for "
                    f"{type(optimizer).__name__}",
                    where=str(latest.path),
                    hint="keep the optimizer, or start a new --model_dir with fine_tune_checkpoint pointing here",
                )
            if "optimizer" in train_state:
                try:
                    _load_optimizer_state(optimizer, train_state["optimizer"])
                except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as exc:
                    raise OdkitError(
                        f"cannot resume the optimizer state: {type(exc).__name__}: {str(exc)[:200]}",
                        where=str(latest.path),
                        hint="the optimizer or the trainable variables changed; use a new --model_dir",
                    ) from None
            saved = train_state.get("data") if isinstance(train_state.get("data"), dict) else {}
            if saved and (saved.get("world_size"), saved.get("per_rank_batch")) != (self.dist.world_size, per_rank_batch):
                self.log(
                    f"warning: resuming with {self.dist.world_size} process(es) x batch {per_rank_batch}, the "
                    f"checkpoint used {saved.get('world_size')} x {saved.get('per_rank_batch')}; the data order "
                    "will not match an uninterrupted run"
                )
            if scaler is not None and train_state.get("scaler"):
                try:
                    scaler.load_state_dict(train_state["scaler"])
                except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
                    raise OdkitError(f"cannot resume the gradient-scaler state: {str(exc)[:200]}",
                                     where=str(latest.path)) from None
            if ema is not None:
                try:
                    ema.load_state_dict(ckpts.read_state_dict(latest.path, use_ema=True), train_state.get("ema_updates", step))
                except OdkitError:
                    ema = ModelEMA(model, ts.moving_average_decay)  # run had no EMA before
            hist = train_state.get("loss_history")
            if torch.is_tensor(hist):
                history = [[float(x) for x in row] for row in hist.tolist()]
            self.log(f"resuming from {latest.path} (step {step})")

        train_dir = self.model_dir / "train"
        summaries = None
        if self.dist.is_main:
            _write_pipeline_config(self.config, self.model_dir / "pipeline.config")
            from odkit.training.summaries import TrainSummaries

            summaries = TrainSummaries(train_dir, history)

        result = TrainResult(self.model_dir, step, latest.path if latest else None, resumed_from=latest.step if latest else None)
        if num_steps is not None and step >= num_steps:
            self.log(f"already trained to step {step} (num_steps {num_steps}); nothing to do")
            if summaries is not None:
                summaries.close()
            result.seconds = time.perf_counter() - t_start
            return result

        loader = self.loader_fn(
            self.config.train_input_reader,
            self.config.model,
            tc,
            is_training=True,
            batch_size=per_rank_batch,
            seed=self.opts.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_workers=threads.workers,
        )
        saved_data = train_state.get("data", {}) if isinstance(train_state.get("data"), dict) else {}
        loader, epoch = data_position.resume_loader(loader, step, saved_data.get("loader"))
        self._loader = loader
        if "rng" in train_state:
            if self.dist.is_main:
                try:
                    restore_rng_state(train_state["rng"])
                except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as exc:
                    raise OdkitError(f"cannot resume the random-number state: {str(exc)[:200]}",
                                     where=str(latest.path) if latest else str(self.model_dir)) from None
            else:
                seed_everything(self.opts.seed + 7919 * self.dist.rank + step)
        elif self.dist.rank:
            seed_everything(self.opts.seed + 7919 * self.dist.rank)

        step_module: nn.Module = _TrainStep(model, precision, ts.add_regularization_loss, channels_last)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            step_module = DDP(
                step_module,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=False,
            )
        step_fn: Callable[..., dict[str, torch.Tensor]] = step_module
        if self.opts.compile:
            step_fn = torch.compile(step_module)

        clip = ts.gradient_clipping_by_norm
        progress = Progress(step, num_steps, global_batch)
        self.log(
            f"training {type(model).__name__} on {device} ({precision.name}, {self.dist.world_size} process"
            f"{'es' if self.dist.world_size > 1 else ''}, batch {global_batch}, {threads.describe()}) from step {step}"
            + (f" to {num_steps}" if num_steps else "")
        )
        window: list[torch.Tensor] = []
        window_start = step
        loss_keys: list[str] | None = None
        last_saved = latest.step if latest else -1
        first_batch_logged = False
        box_check = BoxCheck(int(getattr(model, "num_classes", 0) or 0))
        it = iter(loader)
        lr = schedule(step)
        try:
            while num_steps is None or step < num_steps:
                try:
                    batch = next(it)
                except StopIteration:
                    epoch += 1
                    data_position.set_epoch(loader, epoch)
                    it = iter(loader)
                    try:
                        batch = next(it)
                    except StopIteration:
                        raise OdkitError("the training input yields no batches", where="train_input_reader") from None
                if not box_check.done:
                    box_check.add(batch, self.log, final=num_steps is not None and step + 1 >= num_steps)
                if summaries is not None and not first_batch_logged:
                    summaries.first_batch(step, batch)
                    first_batch_logged = True
                lr = schedule(step)
                set_learning_rate(optimizer, lr)
                images, gt, shapes = _to_device(batch, device)
                losses = step_fn(images, gt, shapes)
                if loss_keys is None:
                    loss_keys = list(losses)
                total = losses["Loss/total_loss"]
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    if clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    total.backward()
                    if clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    optimizer.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                window.append(torch.stack([losses[k].detach().float() for k in loss_keys]))
                final = num_steps is not None and step >= num_steps
                want_ckpt = step % self.opts.checkpoint_every_n == 0 or final
                want_eval = self.opts.eval_every_n > 0 and (step % self.opts.eval_every_n == 0 or final)
                if step % self.opts.log_every_n == 0 or want_ckpt or want_eval:
                    means = self._flush_window(window, window_start, loss_keys)
                    window, window_start = [], step
                    result.losses = means
                    result.images_per_sec = progress.images_per_sec(step)
                    if summaries is not None:
                        summaries.scalars(step, means, lr)
                    self.log(progress.line(step, means, lr, result.images_per_sec))
                if want_ckpt or want_eval:
                    saved = self._save(step, model, optimizer, scaler, ema, summaries, epoch, per_rank_batch, result)
                    last_saved = step
                    result.checkpoint = saved
                    if want_eval and self.dist.is_main and saved is not None and self.evaluate_fn is not None:
                        self.evaluate_fn(saved, self.device)
                    barrier(self.dist)
        except KeyboardInterrupt:
            saved_text = f"the last checkpoint is step {last_saved}" if last_saved >= 0 else "no checkpoint yet"
            self.log(f"interrupted at step {step}; {saved_text}")
            raise
        finally:
            if summaries is not None:
                summaries.close()
        result.step = step
        result.seconds = time.perf_counter() - t_start
        self.log(
            f"done: step {step} in {format_duration(result.seconds)}; checkpoint {result.checkpoint}"
        )
        return result

    # -- helpers -------------------------------------------------------------------------------------
    def _flush_window(self, window: list[torch.Tensor], window_start: int, keys: list[str]) -> dict[str, float]:
        """Mean losses over the window (one host sync); stops the run at the first non-finite loss."""
        values = all_reduce_mean(torch.stack(window), self.dist).cpu()
        finite = torch.isfinite(values).all(dim=1)
        if not bool(finite.all()):
            bad_row = int((~finite).nonzero()[0, 0])
            bad_step = window_start + bad_row + 1
            which = [k for k, v in zip(keys, values[bad_row].tolist()) if not math.isfinite(v)]
            latest = ckpts.latest_checkpoint(self.model_dir)
            raise OdkitError(
                f"loss is NaN/Inf at step {bad_step} ({', '.join(which)}); training stopped",
                where=str(self.model_dir),
                hint=(f"the last good checkpoint is {latest.path.name}; " if latest else "")
                + "lower the learning rate or enable gradient_clipping_by_norm",
            )
        means = values.mean(dim=0).tolist()
        return dict(zip(keys, means))

    def _save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Any,
        ema: ModelEMA | None,
        summaries: Any,
        epoch: int,
        per_rank_batch: int,
        result: TrainResult,
    ) -> Path | None:
        if not self.dist.is_main:
            return None
        state: dict[str, Any] = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "optimizer_type": type(optimizer).__name__,
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": capture_rng_state(),
            "data": {
                "loader": data_position.loader_state(self._loader) or {},
                "batches_consumed": step,
                "epoch": epoch,
                "per_rank_batch": per_rank_batch,
                "world_size": self.dist.world_size,
            },
            "ema_updates": ema.num_updates if ema is not None else 0,
            "seed": self.opts.seed,
        }
        if summaries is not None:
            state["loss_history"] = summaries.history_tensor()
        saved = ckpts.save_checkpoint(
            self.model_dir,
            step,
            model.state_dict(),
            ema_state=ema.state_dict() if ema is not None else None,
            train_state=state,
            extra_meta={
                "global_batch_size": per_rank_batch * self.dist.world_size,
                "losses": result.losses,
            },
            keep=self.opts.keep_checkpoints,
        )
        if summaries is not None:
            summaries.flush()
            summaries.plot_loss()
        return saved.path
