"""`odkit serve`: exported models over HTTP (TF Serving's REST API, :detect, a web page). Never imports torch."""

from __future__ import annotations

import argparse

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    p.add_argument("--model", required=True, action="append", metavar="[NAME=]EXPORT_DIR",
                   help="folder written by `odkit export`, NAME=DIR, or a folder of export folders (repeatable)")
    p.add_argument("--model_name", default=None,
                   help="URL name of the single model (default: the folder's name), as in /v1/models/NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8501, help="TCP port (default 8501, TF Serving's REST port)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own ONNX sessions")
    p.add_argument("--max_batch", type=int, default=8,
                   help="micro-batch: at most this many images per run (1 = no batching; exports with a fixed "
                        "batch always run 1)")
    p.add_argument("--batch_timeout_ms", type=float, default=2.0,
                   help="micro-batch: wait at most this long for more images (default 2)")
    p.add_argument("--max_body_mb", type=float, default=20.0, help="refuse request bodies over this size (413)")
    p.add_argument("--max_pixels", type=int, default=40_000_000,
                   help="refuse images with more pixels than this before decoding (default 40 Mpx)")
    p.add_argument("--request_timeout_s", type=float, default=30.0,
                   help="a request body must arrive within this many seconds (408 otherwise)")
    p.add_argument("--num_threads", type=int, default=0,
                   help="onnxruntime threads per worker (0: CPU cores / workers)")


def run(args: argparse.Namespace) -> int:
    from odkit.errors import OdkitError
    from odkit.serve.models import resolve_model_specs

    checks = [
        (1 <= args.port <= 65535, f"--port {args.port} must be 1..65535"),
        (args.workers >= 1, f"--workers {args.workers} must be at least 1"),
        (1 <= args.max_batch <= 256, f"--max_batch {args.max_batch} must be 1..256"),
        (0 <= args.batch_timeout_ms <= 1000, f"--batch_timeout_ms {args.batch_timeout_ms} must be 0..1000"),
        (0 < args.max_body_mb <= 1024, f"--max_body_mb {args.max_body_mb} must be in (0, 1024]"),
        (args.max_pixels >= 1, f"--max_pixels {args.max_pixels} must be positive"),
        (args.request_timeout_s > 0, f"--request_timeout_s {args.request_timeout_s} must be positive"),
        (args.num_threads >= 0, f"--num_threads {args.num_threads} must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise OdkitError(message)
    specs = resolve_model_specs(args.model, args.model_name)
    # Import the web stack only now, so a missing extra is one line naming `odkit[serve]`.
    from odkit.serve.app import ServeOptions, load_models, run_server

    opts = ServeOptions(
        models=[(name, str(path)) for name, path in specs], host=args.host, port=args.port, workers=args.workers,
        max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms, max_body_mb=args.max_body_mb,
        max_pixels=args.max_pixels, request_timeout_s=args.request_timeout_s, num_threads=args.num_threads,
    )
    models = load_models(opts)  # fail here, with one line, before listening
    try:
        run_server(opts, models)
    except OSError as exc:
        raise OdkitError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                         hint="choose another --port") from None
    return 0
