"""kill -9 (issue 18): create-pet-tfrecord, create-tfrecord, export and train, each killed at several random
moments of its work. After each kill no partial output is visible (outputs are complete or absent; only
hidden ``.NAME.tmp-PID`` temporaries may remain), and the rerun succeeds and removes those temporaries.

The child prints START when its work begins (after imports) and is slowed a little per item so the kill
lands mid-work; the moments are drawn from a seeded RNG. The reruns run in-process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reliability_data import label_map_text, make_pets, make_voc

from odkit import checkpoints as ck
from odkit.cli import main
from odkit.data.tfrecord import iter_records

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
RNG = random.Random(18)


def _kill_at(script: str, delay: float, timeout: float = 60.0) -> bool:
    """Run ``script`` in a child, SIGKILL it ``delay`` s after it prints START; True if it was killed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert p.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line = p.stdout.readline()
            if line.startswith(b"START") or not line or time.monotonic() > deadline:
                break
        time.sleep(delay)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        return killed
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


SLOW_CONVERTER = textwrap.dedent("""
    import sys, time
    import odkit.data.converters.{module} as m
    orig = m.{func}
    def slow(*a, **k):
        time.sleep({delay})
        return orig(*a, **k)
    m.{func} = slow
    from odkit.cli import main
    print("START", flush=True)
    sys.exit(main({argv!r}))
""")


def test_kill9_create_tfrecord(tmp_path: Path) -> None:
    ds = make_voc(tmp_path / "voc", n=40)
    out = tmp_path / "out"
    argv = ["create-tfrecord", "--format", "voc", "--data_dir", str(ds), "--output_path", str(out / "x.record"),
            "--num_shards", "2", "--val_fraction", "0.25"]
    complete = ["label_map.pbtxt", "x_train.record-00000-of-00002", "x_train.record-00001-of-00002",
                "x_val.record-00000-of-00002", "x_val.record-00001-of-00002"]
    script = SLOW_CONVERTER.format(module="common", func="encode_source_image", delay=0.01, argv=argv)
    kills = 0
    for delay in sorted(RNG.uniform(0.0, 0.4) for _ in range(3)):
        kills += _kill_at(script, delay)
        assert _visible(out) in ([], complete), _visible(out)
    assert kills >= 2  # the moments landed mid-work
    assert main(argv) == 0
    assert _visible(out) == complete and _hidden(out) == []
    assert len(list(iter_records(str(out / "x_train.record-?????-of-00002")))) == 30


def test_kill9_create_pet_tfrecord(tmp_path: Path) -> None:
    ds = make_pets(tmp_path / "pets", per_class=20)
    out = tmp_path / "out"
    argv = ["create-pet-tfrecord", "--data_dir", str(ds), "--output_dir", str(out), "--num_shards", "3",
            "--label_map_path", str(ds / "label_map.pbtxt")]
    complete = sorted(f"pet_faces_{s}.record-0000{i}-of-00003" for s in ("train", "val") for i in range(3))
    script = SLOW_CONVERTER.format(module="pets", func="prepare_image", delay=0.01, argv=argv)
    kills = 0
    for delay in sorted(RNG.uniform(0.0, 0.4) for _ in range(3)):
        kills += _kill_at(script, delay)
        assert _visible(out) in ([], complete), _visible(out)
    assert kills >= 2
    assert main(argv) == 0
    assert _visible(out) == complete and _hidden(out) == []
    assert len(list(iter_records(str(out / "pet_faces_*.record-*")))) == 40


EXPORT_SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    torch.set_num_threads(1)
    import odkit.export.exporter as ex
    from tiny_model import FixedResizer, TinyDetector
    orig = ex._try_formats
    def slow(*a, **k):
        time.sleep(0.3)
        return orig(*a, **k)
    ex._try_formats = slow
    torch.manual_seed(0)
    model, resizer = TinyDetector(num_classes=2, input_size=(32, 32)), FixedResizer(32, 32)
    print("START", flush=True)
    ex.export_model(model, resizer, {out!r}, formats=["onnx", "torchscript"], verify=False)
""")


def test_kill9_export(tmp_path: Path) -> None:
    import torch
    from tiny_model import FixedResizer, TinyDetector

    from odkit.export.exporter import export_model

    out = tmp_path / "exported"
    kills = 0
    for delay in sorted(RNG.uniform(0.05, 0.7) for _ in range(2)):
        kills += _kill_at(EXPORT_SCRIPT.format(out=str(out)), delay)
        if out.exists():  # complete or absent
            info = json.loads((out / "export_info.json").read_text())
            assert all((out / f["file"]).is_file() for f in info["formats"].values())
    assert kills >= 1
    assert _hidden(tmp_path)  # the killed export left its PID-named temporary ...
    torch.manual_seed(0)
    export_model(TinyDetector(num_classes=2, input_size=(32, 32)), FixedResizer(32, 32), out, formats=["onnx"],
                 verify=False)
    assert _hidden(tmp_path) == []  # ... which the rerun removed
    assert (out / "model.onnx").is_file() and (out / "export_info.json").is_file()


TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    torch.set_num_threads(1)
    from test_train_fakes import loader_fn, model_fn, pipeline
    from odkit.workflows.train import train

    def slow_loader(*a, **k):
        inner = loader_fn(*a, **k)
        class Slow:
            sampler = inner.sampler
            def __iter__(self):
                for b in inner:
                    time.sleep(0.05)
                    yield b
            def __len__(self):
                return len(inner)
        return Slow()

    print("START", flush=True)
    train(model_dir={out!r}, config=pipeline(num_steps=12), model_fn=model_fn(), loader_fn=slow_loader,
          allow_unsupported=True, device="cpu", log_every_n=3, checkpoint_every_n=3, verbose=False)
""")


def test_kill9_train(tmp_path: Path) -> None:
    from test_train_fakes import loader_fn, model_fn, pipeline

    from odkit.workflows.train import train

    out = tmp_path / "model"
    kills = 0
    for delay in sorted(RNG.uniform(0.2, 1.2) for _ in range(3)):
        kills += _kill_at(TRAIN_SCRIPT.format(out=str(out)), delay)
        if out.exists():
            folders = sorted(p.name for p in out.iterdir() if p.name.startswith("ckpt-"))
            assert folders == sorted(c.path.name for c in ck.list_checkpoints(out))  # every visible one complete
            index = out / "checkpoint"
            if index.exists():
                named = [ln.split('"')[1] for ln in index.read_text().splitlines()]
                assert all((out / n / "meta.json").is_file() for n in named)
    assert kills >= 2
    res = train(model_dir=out, config=pipeline(num_steps=12), model_fn=model_fn(), loader_fn=loader_fn,
                allow_unsupported=True, device="cpu", log_every_n=3, checkpoint_every_n=3, verbose=False)
    assert res.step == 12 and ck.latest_checkpoint(out).step == 12
    assert not [p for p in out.iterdir() if p.name.startswith(".ckpt-")]


@pytest.mark.parametrize("name", ["label_map.pbtxt"])
def test_label_map_written_atomically_with_the_records(tmp_path: Path, name: str) -> None:
    # the derived label map is published together with the shards, never before them
    ds = make_voc(tmp_path / "voc", n=2)
    (tmp_path / "lm.pbtxt").write_text(label_map_text(["cat", "dog"]))
    assert main(["create-tfrecord", "--format", "voc", "--data_dir", str(ds), "--output_path",
                 str(tmp_path / "o" / "x.record")]) == 0
    assert (tmp_path / "o" / name).read_text().count("item") == 2
