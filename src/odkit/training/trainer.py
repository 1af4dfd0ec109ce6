"""The training loop (TF OD API model_lib_v2.train_loop semantics on PyTorch).

One step: lr = schedule(step); losses = model.loss(model.predict(model.preprocess(images)), ...);
total = sum(losses) (+ regularization when add_regularization_loss); backward; clip by global norm;
optimizer step; EMA update. Host syncs happen only every ``log_every_n`` steps and before checkpoints.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from odkit import checkpoints as ckpts
from odkit.core.losses import compile_focal_kernels
from odkit.devices import resolve_device
from odkit.errors import ConfigError, OdkitError
from odkit.fileio import atomic_write_text, list_entries, remove_new_entries
from odkit.runtime import apply_thread_plan, keep_freed_memory, plan_threads
from odkit.training import data_position
from odkit.training import train_state as train_state_io
from odkit.training.box_check import BoxCheck
from odkit.training.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, shutdown
from odkit.training.ema import ModelEMA
from odkit.training.finetune import FINE_TUNE_REPORT, apply_fine_tune, apply_trainable_filters
from odkit.training.optimizers import build_optimizer, set_learning_rate
from odkit.training.precision import Precision, resolve_precision
from odkit.training.progress import Progress, format_duration
from odkit.training.rng import seed_everything
from odkit.training.settings import train_settings
from odkit.training.step import TrainStep, batch_to_device
from odkit.training.summaries import TrainSummaries

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


@dataclass
class _LoopState:
    """What the loop carries from one step to the next."""

    step: int = 0
    epoch: int = 0
    lr: float = 0.0
    last_saved: int = -1
    window: list[torch.Tensor] = field(default_factory=list)  # per-step loss rows since the last log line
    window_start: int = 0
    loss_keys: list[str] | None = None
    first_batch_logged: bool = False


@dataclass
class _Parts:
    """What the loop trains with, built once per run."""

    model: nn.Module
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    ema: ModelEMA | None
    precision: Precision
    scaler: Any
    channels_last: bool
    clip: float


def _write_pipeline_config(config: Any, path: Path) -> None:
    from google.protobuf import text_format

    atomic_write_text(path, text_format.MessageToString(config))


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
        device = resolve_device(self.opts.device)
        before = list_entries(self.model_dir)
        self.dist: DistInfo = init_distributed(device.type)
        try:
            return self._run(device)
        except BaseException:
            # A run that fails before its first checkpoint leaves nothing behind (pipeline.config, events).
            if self.dist.is_main and not ckpts.list_checkpoints(self.model_dir):
                remove_new_entries(self.model_dir, before)
            raise
        finally:
            shutdown(self.dist)

    def _run(self, device: torch.device) -> TrainResult:
        t_start = time.perf_counter()
        self.device = device = self._setup_runtime(device)
        num_steps = self._num_steps()
        self._prepare_model_dir()
        latest = ckpts.latest_checkpoint(self.model_dir)
        parts = self._build_parts(device, fine_tune=latest is None)
        state, train_state, history = self._resume(parts, latest)
        summaries = None
        if self.dist.is_main:
            _write_pipeline_config(self.config, self.model_dir / "pipeline.config")
            summaries = TrainSummaries(self.model_dir / "train", history)

        result = TrainResult(self.model_dir, state.step, latest.path if latest else None,
                             resumed_from=latest.step if latest else None)
        if num_steps is not None and state.step >= num_steps:
            self.log(f"already trained to step {state.step} (num_steps {num_steps}); nothing to do")
            if summaries is not None:
                summaries.close()
            result.seconds = time.perf_counter() - t_start
            return result

        loader = self._resume_loader(state, train_state, latest)
        step_fn = self._step_fn(parts.model, parts.precision, self.settings.add_regularization_loss, parts.channels_last)
        progress = Progress(state.step, num_steps, self.global_batch)
        self.log(
            f"training {type(parts.model).__name__} on {device} ({parts.precision.name}, {self.dist.world_size} "
            f"process{'es' if self.dist.world_size > 1 else ''}, batch {self.global_batch}, "
            f"{self.threads.describe()}, {keep_freed_memory()}) from step {state.step}" + (f" to {num_steps}" if num_steps else "")
        )
        box_check = BoxCheck(int(getattr(parts.model, "num_classes", 0) or 0))
        batches = self._batches(loader, state)
        try:
            while num_steps is None or state.step < num_steps:
                batch = next(batches)
                if not box_check.done:
                    box_check.add(batch, self.log, final=num_steps is not None and state.step + 1 >= num_steps)
                if summaries is not None and not state.first_batch_logged:
                    summaries.first_batch(state.step, batch)
                    state.first_batch_logged = True
                losses = self._train_step(parts, step_fn, batch, state)
                final = num_steps is not None and state.step >= num_steps
                self._after_step(parts, state, losses, final, progress, summaries, result)
        except KeyboardInterrupt:
            saved_text = f"the last checkpoint is step {state.last_saved}" if state.last_saved >= 0 else "no checkpoint yet"
            self.log(f"interrupted at step {state.step}; {saved_text}")
            raise
        finally:
            if summaries is not None:
                summaries.close()
        result.step = state.step
        result.seconds = time.perf_counter() - t_start
        self.log(
            f"done: step {state.step} in {format_duration(result.seconds)}; checkpoint {result.checkpoint}"
        )
        return result

    def _setup_runtime(self, device: torch.device) -> torch.device:
        """The process's device, batch split, thread plan and determinism settings."""
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)
        self.settings = train_settings(self.config.train_config)
        global_batch = self.settings.batch_size
        if global_batch <= 0 or global_batch % self.dist.world_size:
            raise ConfigError(
                f"batch_size {global_batch} must be a positive multiple of the number of processes "
                f"({self.dist.world_size})",
                where="train_config.batch_size",
            )
        self.global_batch = global_batch
        self.per_rank_batch = global_batch // self.dist.world_size
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
        return device

    def _prepare_model_dir(self) -> None:
        """model_dir exists, without a killed run's temporaries; refuses one this run cannot resume; seeds."""
        if self.dist.is_main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            ckpts.remove_stale_temporaries(self.model_dir)
        barrier(self.dist)
        seed_everything(self.opts.seed)
        ckpts.check_resumable(self.model_dir)

    def _build_parts(self, device: torch.device, fine_tune: bool) -> _Parts:
        """Model (restored from the config's fine_tune_checkpoint when ``fine_tune``: a fresh run), optimizer,
        schedule, EMA, precision."""
        tc, ts = self.config.train_config, self.settings
        model = self.model_fn(self.config.model, is_training=True)
        if fine_tune:
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
        return _Parts(model, params, optimizer, schedule, ema, precision, scaler, channels_last,
                      ts.gradient_clipping_by_norm)

    # -- resume --------------------------------------------------------------------------------------
    def _resume(self, parts: _Parts, latest: ckpts.Checkpoint | None
                ) -> tuple[_LoopState, dict[str, Any], list[list[float]]]:
        """Loop state, train_state and loss history from the latest checkpoint (fresh ones without)."""
        if latest is None:
            return _LoopState(), {}, []
        ckpts.load_weights(parts.model, latest.path)
        train_state = ckpts.load_train_state(latest.path)
        step = int(train_state.get("step", latest.step))
        train_state_io.restore_optimizer(parts.optimizer, train_state, str(latest.path))
        saved = train_state.get("data") if isinstance(train_state.get("data"), dict) else {}
        if saved and (saved.get("world_size"), saved.get("per_rank_batch")) != (self.dist.world_size,
                                                                                 self.per_rank_batch):
            self.log(
                f"warning: resuming with {self.dist.world_size} process(es) x batch {self.per_rank_batch}, the "
                f"checkpoint used {saved.get('world_size')} x {saved.get('per_rank_batch')}; the data order "
                "will not match an uninterrupted run"
            )
        train_state_io.restore_scaler(parts.scaler, train_state, str(latest.path))
        if parts.ema is not None:
            try:
                parts.ema.load_state_dict(ckpts.read_state_dict(latest.path, use_ema=True),
                                          train_state.get("ema_updates", step))
            except OdkitError:  # the run had no EMA before
                parts.ema = ModelEMA(parts.model, self.settings.moving_average_decay)
        self.log(f"resuming from {latest.path} (step {step})")
        return (_LoopState(step=step, window_start=step, last_saved=latest.step), train_state,
                train_state_io.loss_history(train_state))

    def _resume_loader(self, state: _LoopState, train_state: dict[str, Any],
                       latest: ckpts.Checkpoint | None) -> Iterable[dict[str, Any]]:
        """The training input, positioned where the checkpoint left it, and the random-number state."""
        loader = self.loader_fn(
            self.config.train_input_reader,
            self.config.model,
            self.config.train_config,
            is_training=True,
            batch_size=self.per_rank_batch,
            seed=self.opts.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_workers=self.threads.workers,
        )
        saved_data = train_state.get("data", {}) if isinstance(train_state.get("data"), dict) else {}
        loader, state.epoch = data_position.resume_loader(loader, state.step, saved_data.get("loader"))
        self._loader = loader
        train_state_io.restore_rng(train_state, self.dist, self.opts.seed, state.step,
                                   str(latest.path) if latest else str(self.model_dir))
        return loader

    # -- step ----------------------------------------------------------------------------------------
    def _step_fn(self, model: nn.Module, precision: Precision, add_regularization_loss: bool,
                 channels_last: bool) -> Callable[..., dict[str, torch.Tensor]]:
        """The forward + loss module, wrapped in DDP when distributed; --compile compiles it on a GPU.

        On the CPU --compile compiles the focal-loss kernels only: the compiled model was slower there than
        eager (FPN-lite 320 batch 8 step on 2 cores: 13.1 vs 14.8 img/s), the fused loss kernels are faster
        (the loss and its gradient 84 -> 18 ms of that step)."""
        step_module: nn.Module = TrainStep(model, precision, add_regularization_loss, channels_last)
        if self.dist.enabled:
            step_module = DDP(
                step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False,
            )
        if self.opts.compile and self.device.type == "cpu":
            why_not = compile_focal_kernels()
            self.log("--compile: focal-loss kernels compiled" if why_not is None
                     else f"--compile: {why_not}; the eager kernels are used")
        elif self.opts.compile:
            return torch.compile(step_module)
        return step_module

    @staticmethod
    def _batches(loader: Iterable[dict[str, Any]], state: _LoopState) -> Iterator[dict[str, Any]]:
        """Batches forever: a new epoch (state.epoch += 1, the loader told) when one ends."""
        while True:
            empty = True
            for batch in loader:
                empty = False
                yield batch
            if empty:
                raise OdkitError("the training input yields no batches", where="train_input_reader")
            state.epoch += 1
            data_position.set_epoch(loader, state.epoch)

    def _train_step(self, parts: _Parts, step_fn: Callable[..., dict[str, torch.Tensor]],
                    batch: dict[str, Any], state: _LoopState) -> dict[str, torch.Tensor]:
        """One optimizer step at the schedule's learning rate; state.step += 1."""
        state.lr = parts.schedule(state.step)
        set_learning_rate(parts.optimizer, state.lr)
        images, gt, shapes = batch_to_device(batch, self.device)
        losses = step_fn(images, gt, shapes)
        if state.loss_keys is None:
            state.loss_keys = list(losses)
        total = losses["Loss/total_loss"]
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler is not None:
            parts.scaler.scale(total).backward()
            if parts.clip > 0:
                parts.scaler.unscale_(parts.optimizer)
                torch.nn.utils.clip_grad_norm_(parts.params, parts.clip)
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
        else:
            total.backward()
            if parts.clip > 0:
                torch.nn.utils.clip_grad_norm_(parts.params, parts.clip)
            parts.optimizer.step()
        if parts.ema is not None:
            parts.ema.update(parts.model)
        state.step += 1
        state.window.append(torch.stack([losses[k].detach().float() for k in state.loss_keys]))
        return losses

    # -- log and checkpoint --------------------------------------------------------------------------
    def _after_step(self, parts: _Parts, state: _LoopState, losses: dict[str, torch.Tensor], final: bool,
                    progress: Progress, summaries: TrainSummaries | None, result: TrainResult) -> None:
        """Log every log_every_n steps; checkpoint (and evaluate) every checkpoint_every_n / eval_every_n."""
        step = state.step
        want_ckpt = step % self.opts.checkpoint_every_n == 0 or final
        want_eval = self.opts.eval_every_n > 0 and (step % self.opts.eval_every_n == 0 or final)
        if step % self.opts.log_every_n == 0 or want_ckpt or want_eval:
            means = self._flush_window(state.window, state.window_start, state.loss_keys or [])
            state.window, state.window_start = [], step
            result.losses = means
            result.images_per_sec = progress.images_per_sec(step)
            if summaries is not None:
                summaries.scalars(step, means, state.lr)
            self.log(progress.line(step, means, state.lr, result.images_per_sec))
        if want_ckpt or want_eval:
            saved = self._save(step, parts.model, parts.optimizer, parts.scaler, parts.ema, summaries, state.epoch,
                               self.per_rank_batch, result)
            state.last_saved = step
            result.checkpoint = saved
            if want_eval and self.dist.is_main and saved is not None and self.evaluate_fn is not None:
                self.evaluate_fn(saved, self.device)
            barrier(self.dist)

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
        state = train_state_io.capture(step, optimizer, scaler, ema, self._loader, epoch, per_rank_batch,
                                       self.dist.world_size, self.opts.seed,
                                       summaries.history_tensor() if summaries is not None else None)
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
