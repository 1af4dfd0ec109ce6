"""Data commands: create-pet-tfrecord, create-tfrecord, records (inspect, preview), download.

No torch import here; the converters and `records inspect` do not need it.
"""

from __future__ import annotations

import argparse
import json
import sys

from odkit.errors import OdkitError

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def _bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("true", "1", "yes", "t", "y"):
        return True
    if v in ("false", "0", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_pets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_dir", required=True, help="Oxford-IIIT Pet folder with images/ and annotations/")
    p.add_argument("--output_dir", required=True, help="folder for pet_faces_{train,val}.record-?????-of-000NN")
    p.add_argument("--label_map_path", default=None,
                   help="label map (default: the 37-breed pet_label_map.pbtxt shipped with odkit); "
                        "examples whose breed is not in it are skipped")
    p.add_argument("--num_shards", type=int, default=10, help="shards per split (default 10)")
    p.add_argument("--faces_only", type=_bool, nargs="?", const=True, default=True,
                   help="head boxes from the XMLs (only true is supported)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def _add_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=("voc", "coco", "csv"), help="input annotation format")
    p.add_argument("--output_path", required=True,
                   help="output prefix, e.g. out/train.record -> out/train.record-00000-of-00001 "
                        "(with --val_fraction: out/train_train.record-..., out/train_val.record-...)")
    p.add_argument("--data_dir", help="voc: dataset folder (Annotations/ + JPEGImages/, annotations/ + images/, "
                                      "or XMLs next to images)")
    p.add_argument("--annotations_dir", help="voc: folder of the XML files (default: found under --data_dir)")
    p.add_argument("--image_dir", "--images_dir", dest="image_dir",
                   help="image folder (coco / csv: required; voc: default found under --data_dir)")
    p.add_argument("--annotations_file", help="coco: instances JSON")
    p.add_argument("--csv_path", "--csv_input", dest="csv_path",
                   help="csv: filename,width,height,class,xmin,ymin,xmax,ymax")
    p.add_argument("--class_key", help="coco: take the class name from this image-entry field (e.g. breed)")
    p.add_argument("--label_map_path", help="classes to keep (others skipped); default: build one from the data")
    p.add_argument("--label_map_output_path", help="where to write the built label map "
                                                   "(default: label_map.pbtxt next to the records)")
    p.add_argument("--num_shards", type=int, default=1)
    p.add_argument("--val_fraction", type=float, default=0.0, help="hold out this fraction as a val split")
    p.add_argument("--seed", type=int, default=42, help="seed of the train / val shuffle")
    p.add_argument("--ignore_difficult_instances", action="store_true", help="voc: drop difficult objects")
    p.add_argument("--include_masks", action="store_true",
                   help="coco: write each annotation's segmentation (polygons / RLE) as a PNG instance mask")
    p.add_argument("--mask_dir", help="voc: SegmentationObject folder; writes instance masks (object k = value k)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def _add_records(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="records_command", metavar="SUBCOMMAND")
    sub.required = True
    ins = sub.add_parser("inspect", help="counts, classes, box sizes; --json lines; --draw images")
    ins.add_argument("pattern", nargs="+", help="TFRecord files, globs (NAME-?????-of-000NN), folders, comma lists")
    ins.add_argument("--json", action="store_true", help="one JSON line per example")
    ins.add_argument("--draw", type=int, default=0, metavar="N", help="draw the first N examples with boxes")
    ins.add_argument("--out", help="folder for --draw images")
    ins.add_argument("--limit", type=int, default=None, help="read at most this many examples")
    ins.add_argument("--skip_corrupt", action="store_true", help="count corrupt records / images instead of failing")
    ins.add_argument("--ignore_unsupported", action="store_true", help="ignore mask / keypoint features")
    pre = sub.add_parser("preview", help="draw what the input pipeline feeds the model (resize, augmentation)")
    pre.add_argument("--pipeline_config_path", required=True)
    pre.add_argument("--override", action="append", default=[], metavar="K=V")
    pre.add_argument("--num", type=int, default=16)
    pre.add_argument("--out", required=True)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--split", choices=("train", "eval"), default="train")


def _add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=("pets",), help="dataset to fetch")
    p.add_argument("--dest", required=True, help="folder to download and extract into")
    p.add_argument("--url_base", default=None, help="mirror to fetch images.tar.gz / annotations.tar.gz from")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    p.add_argument("--keep_archives", type=_bool, nargs="?", const=True, default=True,
                   help="keep the .tar.gz files after extracting (default true)")


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    {"create-pet-tfrecord": _add_pets, "create-tfrecord": _add_create, "records": _add_records,
     "download": _add_download}[command](p)


def _print_summary(summary: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict()))  # type: ignore[attr-defined]
    else:
        print(summary.format())  # type: ignore[attr-defined]


def _need(args: argparse.Namespace, *names: str) -> None:
    for n in names:
        if not getattr(args, n, None):
            raise OdkitError(f"--format {args.format} needs --{n}")


def run(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "create-pet-tfrecord":
        from odkit.data.converters.pets import create_pet_tfrecord

        s = create_pet_tfrecord(args.data_dir, args.output_dir, label_map_path=args.label_map_path,
                                num_shards=args.num_shards, faces_only=args.faces_only)
        _print_summary(s, args.json)
        return 0
    if cmd == "create-tfrecord":
        from odkit.fileio import check_output_file

        check_output_file(args.output_path, "--output_path")
        if args.label_map_output_path:
            check_output_file(args.label_map_output_path, "--label_map_output_path")
        common = dict(label_map_path=args.label_map_path, num_shards=args.num_shards,
                      val_fraction=args.val_fraction, seed=args.seed, label_map_output_path=args.label_map_output_path)
        if args.format == "voc":
            from odkit.data.converters.voc import create_voc_tfrecord

            _need(args, "data_dir")
            s = create_voc_tfrecord(args.data_dir, args.output_path, annotations_dir=args.annotations_dir,
                                    images_dir=args.image_dir, ignore_difficult=args.ignore_difficult_instances,
                                    mask_dir=args.mask_dir, **common)
        elif args.format == "coco":
            from odkit.data.converters.coco import create_coco_tfrecord

            _need(args, "annotations_file", "image_dir")
            s = create_coco_tfrecord(args.annotations_file, args.image_dir, args.output_path,
                                     class_key=args.class_key, include_masks=args.include_masks, **common)
        else:
            from odkit.data.converters.csv_table import create_csv_tfrecord

            _need(args, "csv_path", "image_dir")
            s = create_csv_tfrecord(args.csv_path, args.image_dir, args.output_path, **common)
        _print_summary(s, args.json)
        return 0
    if cmd == "records":
        from odkit.fileio import check_output_dir, check_output_file

        if args.records_command == "preview":
            check_output_file(args.out, "--out")
            from odkit.workflows.preview import run as preview_run

            return int(preview_run(args) or 0)
        from odkit.data.inspect_records import inspect_records

        if args.out:
            check_output_dir(args.out, "--out")

        inspect_records(args.pattern, as_json=args.json, draw=args.draw, out_dir=args.out,
                        skip_corrupt=args.skip_corrupt, ignore_unsupported=args.ignore_unsupported,
                        limit=args.limit, stream=sys.stdout)
        return 0
    if cmd == "download":
        from odkit.data.download import download_pets

        download_pets(args.dest, url_base=args.url_base, timeout=args.timeout, keep_archives=args.keep_archives)
        return 0
    raise OdkitError(f"unknown data command {cmd!r}")
