"""`odkit demo`: the whole TF OD API workflow, end to end, with the public commands a user would type.

data (built-in or a real Pets folder) -> create-pet-tfrecord -> pipeline.config -> train -> eval -> export
-> predict, then a summary printed and written to ``W/summary.json``.

The commands run in-process through ``run_command(argv) -> exit code``, which the caller gives
(``odkit.cli.main``: the CLI sits above this layer; odkit.demo and odkit.cli.demo_cmd pass it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from odkit import config as cfg
from odkit.data.synthetic import SyntheticSpec, generate_pets_like
from odkit.errors import OdkitError
from odkit.fileio import atomic_write_text

RunCommand = Callable[[list[str]], int]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "ssd_mobilenet_v2_fpnlite_128x128_demo"

COCO_KEYS = (
    "DetectionBoxes_Precision/mAP",
    "DetectionBoxes_Precision/mAP@.50IOU",
    "DetectionBoxes_Precision/mAP@.75IOU",
    "DetectionBoxes_Precision/mAP (small)",
    "DetectionBoxes_Precision/mAP (medium)",
    "DetectionBoxes_Precision/mAP (large)",
    "DetectionBoxes_Recall/AR@1",
    "DetectionBoxes_Recall/AR@10",
    "DetectionBoxes_Recall/AR@100",
    "DetectionBoxes_Recall/AR@100 (small)",
    "DetectionBoxes_Recall/AR@100 (medium)",
    "DetectionBoxes_Recall/AR@100 (large)",
)


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.config"))


def resolve_config(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".config" and p.is_file():
        return p
    cand = CONFIG_DIR / f"{name.removesuffix('.config')}.config"
    if not cand.is_file():
        raise OdkitError(
            f"unknown demo config {name!r}",
            hint="choose one of: " + ", ".join(available_configs()) + ", or give a path to a .config file",
        )
    return cand


def _step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def _odkit(run_command: RunCommand, argv: Sequence[str]) -> None:
    """Run one public odkit command in-process, echoing the command line a user would type."""
    print("$ odkit " + " ".join(shlex.quote(a) for a in argv), flush=True)
    rc = run_command(list(argv))
    if rc != 0:
        raise OdkitError(f"`odkit {argv[0]}` failed with exit code {rc}", hint="see the message above")


def breeds_in(data_dir: Path) -> list[str]:
    """Class names present in a Pets-layout folder (from trainval.txt file names, as create_pet_tf_record does)."""
    tv = data_dir / "annotations" / "trainval.txt"
    if not tv.is_file():
        raise OdkitError(f"{tv} not found", where=str(data_dir), hint="expected the Oxford-IIIT Pet layout")
    names = set()
    for line in tv.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split()[0].rsplit("_", 1)[0])
    return sorted(names)


def write_label_map(names: Sequence[str], path: Path) -> None:
    path.write_text("".join(f'item {{\n  id: {i + 1}\n  name: "{n}"\n}}\n\n' for i, n in enumerate(names)))


def run_demo(
    workdir: str | os.PathLike[str] = "odkit_demo",
    data_dir: str | os.PathLike[str] | None = None,
    config: str = DEFAULT_CONFIG,
    steps: int | None = None,
    seed: int = 0,
    images_per_class: int = 120,
    num_shards: int = 2,
    device: str | None = None,
    fresh: bool = False,
    *,
    run_command: RunCommand,
) -> dict:
    t0 = time.time()
    W = Path(workdir).resolve()
    if fresh and W.exists():
        shutil.rmtree(W)
    W.mkdir(parents=True, exist_ok=True)
    config_path = resolve_config(config)

    D, dataset = _data(W, data_dir, images_per_class, seed)
    names = breeds_in(D)
    label_map = W / "label_map.pbtxt"
    write_label_map(names, label_map)
    print(f"{len(names)} classes: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")

    records = W / "records"
    _step("2/7 TFRecords (create_pet_tf_record.py)")
    if not list(records.glob("pet_faces_train.record-*")):
        _odkit(run_command, ["create-pet-tfrecord", "--data_dir", str(D), "--output_dir", str(records),
                             "--label_map_path", str(label_map), "--num_shards", str(num_shards)])
    else:
        print(f"already there: {records}")

    _step(f"3/7 pipeline.config from {config_path.name}")
    pipeline_path = W / "pipeline.config"
    num_steps = _write_pipeline_config(config_path, pipeline_path, records, num_shards, label_map, len(names), steps)

    model_dir = W / "model"
    device_flag = ["--device", device] if device else []
    _step(f"4/7 training for {num_steps} steps (model_main_tf2.py)")
    _odkit(run_command, ["train", "--pipeline_config_path", str(pipeline_path), "--model_dir", str(model_dir),
                         "--seed", str(seed), *device_flag])

    _step("5/7 evaluation, COCO metrics (model_main_tf2.py --checkpoint_dir)")
    _odkit(run_command, ["eval", "--pipeline_config_path", str(pipeline_path), "--model_dir", str(model_dir),
                         "--checkpoint_dir", str(model_dir), "--run_once", *device_flag])
    metrics_file = model_dir / "eval" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}

    export_dir = W / "exported_model"
    _step("6/7 export to ONNX + TorchScript (exporter_main_v2.py)")
    if export_dir.exists():
        shutil.rmtree(export_dir)
    _odkit(run_command, ["export", "--input_type", "image_tensor", "--pipeline_config_path", str(pipeline_path),
                         "--trained_checkpoint_dir", str(model_dir), "--output_directory", str(export_dir)])

    # predict on held-out images (test.txt: never seen in training or eval)
    pred_dir = W / "predictions"
    _step("7/7 laptop inference with onnxruntime (odkit predict)")
    sample = _sample_test_images(D, W / "sample_images")
    _odkit(run_command, ["predict", "--model", str(export_dir), "--images", str(sample), "--output_dir",
                         str(pred_dir), "--min_score", "0.5"])

    seconds = time.time() - t0
    summary = {
        "dataset": dataset, "config": config_path.name, "steps": int(num_steps), "seconds": round(seconds, 1),
        "metrics": {k: metrics.get(k) for k in COCO_KEYS} | {k: v for k, v in metrics.items() if k not in COCO_KEYS},
        "classes": names, "workdir": str(W), "pipeline_config": str(pipeline_path), "model_dir": str(model_dir),
        "export_dir": str(export_dir), "predictions_dir": str(pred_dir), "eval_pictures": str(model_dir / "eval"),
        "tensorboard": f"tensorboard --logdir {model_dir}",
    }
    atomic_write_text(W / "summary.json", json.dumps(summary, indent=2))
    _print_summary(summary, seconds, dataset, config_path.name, num_steps, W)
    return summary


def _data(W: Path, data_dir: str | os.PathLike[str] | None, images_per_class: int, seed: int) -> tuple[Path, str]:
    """Step 1: (the Pets-layout folder, its description): the built-in data generated in W/data, or ``data_dir``."""
    if data_dir is not None:
        D = Path(data_dir).resolve()
        _step(f"1/7 using the dataset in {D}")
        return D, f"Oxford-IIIT Pet layout at {D}"
    D = W / "data"
    _step(f"1/7 generating the built-in dataset in {D}")
    if not (D / "annotations" / "trainval.txt").is_file():
        counts = generate_pets_like(D, SyntheticSpec(images_per_class=images_per_class, seed=seed))
        print(f"wrote {counts['trainval']} trainval + {counts['test']} test images, {counts['classes']} classes")
    else:
        print("already there; reusing it (pass --fresh to regenerate)")
    return D, "built-in synthetic pets-layout"


def _write_pipeline_config(config_path: Path, pipeline_path: Path, records: Path, num_shards: int, label_map: Path,
                           num_classes: int, steps: int | None) -> int:
    """Step 3: the demo config pointed at the records and label map; returns train_config.num_steps."""
    shards = f"{num_shards:05d}"
    overrides = [
        f"train_input_reader.tf_record_input_reader.input_path={records}/pet_faces_train.record-?????-of-{shards}",
        f"train_input_reader.label_map_path={label_map}",
        f"eval_input_reader.0.tf_record_input_reader.input_path={records}/pet_faces_val.record-?????-of-{shards}",
        f"eval_input_reader.0.label_map_path={label_map}",
    ]
    arch = cfg.load(str(config_path)).model.WhichOneof("model")
    overrides.append(f"model.{arch}.num_classes={num_classes}")
    if steps is not None:
        # like model_main_tf2's --num_train_steps: the LR schedule stays as configured
        overrides.append(f"train_config.num_steps={steps}")
    pipeline = cfg.load(str(config_path), overrides=overrides)
    cfg.save(pipeline, str(pipeline_path))
    print(f"wrote {pipeline_path}")
    return pipeline.train_config.num_steps


def _sample_test_images(D: Path, sample: Path, count: int = 12) -> Path:
    """Up to ``count`` images of D's test.txt, evenly spread, copied into a fresh ``sample`` folder."""
    test_list = D / "annotations" / "test.txt"
    test_imgs = []
    if test_list.is_file():
        for line in test_list.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                p = D / "images" / f"{line.split()[0]}.jpg"
                if p.is_file():
                    test_imgs.append(p)
    if sample.exists():
        shutil.rmtree(sample)
    sample.mkdir()
    for p in test_imgs[:: max(1, len(test_imgs) // count)][:count]:
        shutil.copyfile(p, sample / p.name)
    return sample


def _print_summary(summary: dict, seconds: float, dataset: str, config_name: str, num_steps: int, W: Path) -> None:
    m = summary["metrics"]
    model_dir, export_dir, pred_dir = summary["model_dir"], summary["export_dir"], summary["predictions_dir"]

    def fmt(k: str) -> str:
        v = m.get(k)
        return "n/a" if v is None else f"{v:.3f}"

    print(
        "\n" + "=" * 72 + "\n"
        f"odkit demo finished in {seconds / 60:.1f} min ({dataset}, {config_name}, {num_steps} steps)\n"
        f"  COCO mAP@0.5:0.95 = {fmt('DetectionBoxes_Precision/mAP')}   "
        f"mAP@0.5 = {fmt('DetectionBoxes_Precision/mAP@.50IOU')}   "
        f"mAP@0.75 = {fmt('DetectionBoxes_Precision/mAP@.75IOU')}   AR@100 = {fmt('DetectionBoxes_Recall/AR@100')}\n"
        f"  eval pictures and PR curves: {Path(model_dir) / 'eval'}\n"
        f"  predictions drawn on held-out images: {pred_dir}\n"
        f"  training curves: tensorboard --logdir {model_dir}\n"
        f"  summary: {W / 'summary.json'}\n"
        f"  run the model on your own images (needs only onnxruntime, numpy, Pillow):\n"
        f"    odkit predict --model {export_dir} --images 'path/to/*.jpg' --output_dir out/\n"
        f"  or serve it (TF Serving REST API + a web page at http://127.0.0.1:8501/; pip install \"odkit[serve]\"):\n"
        f"    odkit serve --model {export_dir}\n" + "=" * 72,
        flush=True,
    )
