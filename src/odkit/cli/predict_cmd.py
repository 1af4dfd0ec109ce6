"""`odkit predict`: run an exported model on images (onnxruntime or TorchScript). Never imports torch itself."""

from __future__ import annotations

import argparse
import sys

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    p.add_argument("--model", required=True, help="folder written by `odkit export` (has export_info.json)")
    p.add_argument("--images", required=True, nargs="+", help="image file(s), folder(s) or glob(s), e.g. 'imgs/*.jpg'")
    p.add_argument("--output_dir", required=True, help="where drawn images and detections.json / .csv go")
    p.add_argument("--min_score", type=float, default=0.5, help="keep detections with score >= this (default 0.5)")
    p.add_argument("--max_boxes", type=int, default=20, help="at most this many detections per image (default 20)")
    p.add_argument("--format", choices=("json", "csv"), default="json", help="detections file format")
    p.add_argument("--backend", choices=("auto", "onnx", "torchscript"), default="auto",
                   help="auto: ONNX with onnxruntime when installed, else TorchScript")
    p.add_argument("--no_draw", action="store_true", help="do not write drawn images")
    p.add_argument("--num_threads", type=int, default=0, help="CPU threads for the runtime (0: the cores available to this process)")


def run(args: argparse.Namespace) -> int:
    from odkit.errors import OdkitError
    from odkit.inference.detector import Detector
    from odkit.inference.predict import expand_image_paths, predict_images

    if not 0.0 <= args.min_score <= 1.0:
        raise OdkitError(f"--min_score {args.min_score} must be between 0 and 1")
    if args.max_boxes < 1:
        raise OdkitError(f"--max_boxes {args.max_boxes} must be at least 1")
    from odkit.fileio import check_output_dir

    check_output_dir(args.output_dir, "--output_dir")
    detector = Detector(args.model, args.backend, num_threads=args.num_threads)
    paths = expand_image_paths(args.images)
    print(f"odkit predict: {len(paths)} image(s) with {detector.backend.name} from {args.model}", file=sys.stderr)
    summary = predict_images(
        detector, paths, args.output_dir, min_score=args.min_score, max_boxes=args.max_boxes,
        output_format=args.format, draw=not args.no_draw,
    )
    ok = len(summary.records) - summary.failed
    print(f"odkit predict: {ok} image(s) done, {summary.failed} skipped, {summary.seconds:.1f} s; "
          f"wrote {summary.output_file}", file=sys.stderr)
    if ok == 0:
        raise OdkitError(f"no image could be processed ({summary.failed} failed; see {summary.output_file})")
    return 1 if summary.failed else 0
