"""`odkit records preview`: a grid of input-pipeline images with their groundtruth boxes, as the model gets them."""

from __future__ import annotations

import argparse
import math
from typing import Any

from PIL import Image, ImageDraw

from odkit.config.loader import load
from odkit.data.label_map import load_label_map
from odkit.drawing import draw_boxes, draw_keypoints
from odkit.errors import OdkitError
from odkit.fileio import atomic_write
from odkit.inputs.builder import build_dataset, build_input_loader, single_reader


def collect(config: Any, split: str, num: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The first `num` examples of the train (augmented) or eval stream, one dict each."""
    is_training = split == "train"
    reader = config.train_input_reader if is_training else single_reader(config.eval_input_reader)
    names: dict[int, str] = {}
    if reader.label_map_path:
        lm = load_label_map(reader.label_map_path)
        names = dict(lm.id_to_display_name if reader.use_display_name else lm.id_to_name)
    loader = build_input_loader(reader, config.model, config.train_config if is_training else None,
                                is_training=False, batch_size=1, seed=seed, num_workers=0)
    if is_training:  # same transform as training (augmentation), without dropping a partial batch
        loader.dataset.transform = build_dataset(reader, config.model, config.train_config, is_training=True,
                                                 seed=seed).transform
    out: list[dict[str, Any]] = []
    for batch in loader:
        gt = batch["groundtruth"]
        n = int(gt["num_boxes"][0])
        out.append({"image": batch["images"][0], "true_shape": batch["true_image_shapes"][0].tolist(),
                    "boxes": gt["boxes"][0, :n].tolist(), "classes": gt["classes"][0, :n].tolist(),
                    "source_id": batch["source_ids"][0]})
        if "keypoints" in gt:
            out[-1]["keypoints"] = gt["keypoints"][0, :n].numpy()
            out[-1]["keypoint_visibilities"] = gt["keypoint_visibilities"][0, :n].numpy()
        if len(out) >= num:
            break
    return out, names


def render_grid(items: list[dict[str, Any]], names: dict[int, str]) -> Any:
    """A Pillow image: one tile per example, boxes in class colours, valid region outlined in grey."""
    if not items:
        raise OdkitError("no examples to preview")
    th = max(int(it["image"].shape[1]) for it in items)
    tw = max(int(it["image"].shape[2]) for it in items)
    cols = math.ceil(math.sqrt(len(items)))
    rows = math.ceil(len(items) / cols)
    gap = 4
    grid = Image.new("RGB", (cols * (tw + gap) + gap, rows * (th + gap) + gap), (255, 255, 255))
    for k, it in enumerate(items):
        arr = it["image"].permute(1, 2, 0).contiguous().numpy()
        tile = draw_boxes(arr, it["boxes"], it["classes"],
                          labels=[f"{c} {names.get(c, '')}".strip() for c in it["classes"]])
        d = ImageDraw.Draw(tile)
        h, w = arr.shape[0], arr.shape[1]
        vh, vw = it["true_shape"][0], it["true_shape"][1]
        if (vh, vw) != (h, w):
            d.rectangle([0, 0, vw - 1, vh - 1], outline=(128, 128, 128))
        if "keypoints" in it:
            draw_keypoints(tile, it["keypoints"], it["keypoint_visibilities"], it["classes"])
        d.text((3, h - 12), str(it["source_id"])[:40], fill=(255, 255, 255))
        r, c = divmod(k, cols)
        grid.paste(tile, (gap + c * (tw + gap), gap + r * (th + gap)))
    return grid


def write_png(image: Any, path: str) -> None:
    """Write atomically (odkit.fileio)."""
    with atomic_write(path, "wb") as f:
        image.save(f, format="PNG")


def run(args: argparse.Namespace) -> int:
    """CLI entry (called by `odkit records preview`)."""
    if args.num < 1:
        raise OdkitError(f"--num must be >= 1, got {args.num}")
    config = load(args.pipeline_config_path, getattr(args, "override", []) or [],
                  getattr(args, "config_override", []) or [])
    items, names = collect(config, getattr(args, "split", "train"), args.num, getattr(args, "seed", 0))
    write_png(render_grid(items, names), args.out)
    print(f"wrote {args.out}: {len(items)} {getattr(args, 'split', 'train')} images "
          f"{tuple(items[0]['image'].shape[1:])} with boxes as the model receives them")
    return 0
