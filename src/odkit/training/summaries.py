"""What a run shows: TensorBoard events in D/train, the first batch as an image grid, D/train/loss.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from odkit.fileio import atomic_save


class TrainSummaries:
    """SummaryWriter on D/train (rank 0 only) plus the in-memory loss history for loss.png."""

    def __init__(self, train_dir: Path, history: list[list[float]] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = train_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(train_dir))
        # rows: step, total, classification, localization, regularization, learning rate
        self.history: list[list[float]] = list(history or [])

    def scalars(self, step: int, losses: dict[str, float], lr: float) -> None:
        for k, v in losses.items():
            self.writer.add_scalar(k, v, step)
        self.writer.add_scalar("learning_rate", lr, step)
        self.history.append(
            [
                float(step),
                losses.get("Loss/total_loss", float("nan")),
                losses.get("Loss/classification_loss", float("nan")),
                losses.get("Loss/localization_loss", float("nan")),
                losses.get("Loss/regularization_loss", float("nan")),
                lr,
            ]
        )

    def first_batch(self, step: int, batch: dict[str, Any], max_images: int = 8) -> None:
        grid = batch_grid(batch, max_images)
        if grid is not None:
            self.writer.add_image("train_input_images", grid, step)

    def history_tensor(self) -> torch.Tensor:
        return torch.tensor(self.history, dtype=torch.float64).reshape(-1, 6)

    def plot_loss(self) -> Path | None:
        if not self.history:
            return None
        return plot_loss_history(self.history, self.dir / "loss.png")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def batch_grid(batch: dict[str, Any], max_images: int = 8) -> torch.Tensor | None:
    """uint8 [3, H, W] grid of the batch's images with their groundtruth boxes drawn."""
    from torchvision.utils import draw_bounding_boxes, make_grid

    images = batch.get("images")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        return None
    images = images[:max_images].detach().cpu()
    if images.dtype != torch.uint8:
        images = images.clamp(0, 255).to(torch.uint8)
    gt = batch.get("groundtruth") or {}
    boxes, classes = gt.get("boxes"), gt.get("classes")
    drawn = []
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        if isinstance(boxes, torch.Tensor) and isinstance(classes, torch.Tensor):
            keep = classes[i] > 0
            b = boxes[i][keep].detach().cpu().float()
            if len(b):
                xyxy = torch.stack([b[:, 1] * w, b[:, 0] * h, b[:, 3] * w, b[:, 2] * h], 1)
                labels = [str(int(c)) for c in classes[i][keep].tolist()]
                img = draw_bounding_boxes(img, xyxy, labels=labels, colors="yellow", width=2)
        drawn.append(img)
    return make_grid(drawn, nrow=min(4, len(drawn)), padding=2)


def plot_loss_history(history: list[list[float]], path: Path) -> Path:
    """Total / classification / localization loss against step, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(zip(*history))
    steps = rows[0]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for col, name in ((1, "total_loss"), (2, "classification_loss"), (3, "localization_loss")):
        ax.plot(steps, rows[col], label=name, marker="o" if len(steps) < 50 else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    return path
