"""TF2 checkpoints as fine_tune_checkpoint (TF's restore_from_objects semantics), `odkit export` of a TF checkpoint,
`odkit convert-checkpoint`, and fine-tuning from the FPN-lite fixture checkpoint on the pets subset end to end.

Fixtures: the TF OD API reference folders in shared/compat/tfod_reference plus every complete subfolder of
$ODKIT_TFOD_FIXTURES (see tests/test_tf_parity.py); skipped cleanly without them. The numerical parity of the
mapped models is tests/test_tf_parity.py's subject; here: which tensors each fine-tune type restores, and the
command-line paths.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from odkit import checkpoints as ck
from odkit.cli import main
from odkit.errors import OdkitError

FPNLITE = "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"
REPO = Path(__file__).resolve().parents[1]
PETS_LABEL_MAP = REPO / "src" / "odkit" / "data" / "pet_label_map.pbtxt"


def _fixture_dirs() -> list[Path]:
    from conftest import SHARED

    roots = [SHARED / "compat" / "tfod_reference"]
    if os.environ.get("ODKIT_TFOD_FIXTURES"):
        roots.append(Path(os.environ["ODKIT_TFOD_FIXTURES"]))
    out = []
    for root in roots:
        if root.is_dir():
            out += [d for d in sorted(root.iterdir()) if (d / "checkpoint" / "checkpoint").is_file()
                    and (d / "pipeline.config").is_file() and (root == roots[0] or (d / "DONE").is_file())]
    return out


def _fixture(compat_dir: Path, name: str) -> Path:
    d = compat_dir / "tfod_reference" / name
    if not (d / "checkpoint" / "ckpt-0.index").is_file():
        pytest.skip(f"{d} not found")
    return d


def _build(config_path: Path, num_classes: int | None = None, is_training: bool = True):  # noqa: ANN202
    from odkit.builders.model_builder import build_model
    from odkit.config import load

    config = load(config_path)
    arch = config.model.WhichOneof("model")
    if num_classes is not None:
        getattr(config.model, arch).num_classes = num_classes
    torch.manual_seed(0)
    return build_model(config.model, is_training=is_training), config


def _tf_values(model: torch.nn.Module, config, ckpt) -> dict[str, np.ndarray]:  # noqa: ANN001
    from odkit.tfcompat.mapping import map_tf_variables

    plan = map_tf_variables(model, config.model, ckpt)
    return {m.odkit_name: np.asarray(m.transform(ckpt.read(m.tf_name))) for m in plan.maps}


def _restorable(names) -> list[str]:  # noqa: ANN001
    """State-dict names a TF checkpoint can fill (torch's BN step counters have no TF counterpart)."""
    return sorted(k for k in names if not k.endswith("num_batches_tracked"))


def _equal(t: torch.Tensor, a: np.ndarray) -> bool:
    return tuple(t.shape) == a.shape and np.array_equal(t.detach().cpu().numpy(), a.astype(t.detach().numpy().dtype))


@pytest.mark.parametrize("fixture", _fixture_dirs(), ids=lambda d: d.name)
def test_restore_types_follow_restore_from_objects(fixture: Path) -> None:
    """full: everything; detection: the feature extractor, heads fresh; classification: the backbone only."""
    from odkit.errors import UnsupportedError
    from odkit.tfcompat import open_tf_checkpoint
    from odkit.training.finetune import load_tf_fine_tune

    path = str(fixture / "checkpoint")
    ckpt = open_tf_checkpoint(path)
    model, config = _build(fixture / "pipeline.config")
    try:
        tf = _tf_values(model, config, ckpt)
    except (UnsupportedError, NotImplementedError) as exc:  # a family whose mapping has not landed
        pytest.skip(str(exc))
    rep = load_tf_fine_tune(model, config.model, path, "full")
    state = model.state_dict()
    assert rep.fresh == [] and sorted(rep.loaded) == _restorable(state)
    assert all(_equal(state[k], tf[k]) for k in rep.loaded)

    # detection into a model with another num_classes: the class head does not fit, and is not asked for
    model, config = _build(fixture / "pipeline.config", num_classes=3)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    rep = load_tf_fine_tune(model, config.model, path, "detection")
    state = model.state_dict()
    fe = _restorable(k for k in state if k.startswith(model.feature_extractor_param_prefixes))
    heads = _restorable(k for k in state if k not in fe)
    assert fe and heads and sorted(rep.loaded) == fe and sorted(rep.fresh) == sorted(heads)
    assert all(_equal(state[k], tf[k]) for k in fe)
    assert all(torch.equal(state[k], init[k]) for k in heads)
    float_heads = [k for k in heads if state[k].is_floating_point() and state[k].numel() > 1]
    same_shape = [k for k in float_heads if tuple(state[k].shape) == tf[k].shape]
    assert same_shape and not any(_equal(state[k], tf[k]) for k in same_shape)  # e.g. the box head: fresh
    assert rep.skipped and all(not n.startswith("model/_feature_extractor") for n, _ in rep.skipped)
    assert "restored" in rep.summary() and f"left fresh {len(heads)}" in rep.summary()

    model, config = _build(fixture / "pipeline.config", num_classes=3)
    rep = load_tf_fine_tune(model, config.model, path, "classification")
    state = model.state_dict()
    backbone = _restorable(k for k in state if k.startswith(model.backbone_param_prefixes))
    assert backbone and sorted(rep.loaded) == backbone and set(backbone) <= set(fe)  # == for Faster R-CNN ResNet
    assert all(_equal(state[k], tf[k]) for k in backbone)

    # full with another num_classes: one line naming the first mismatch
    with pytest.raises(OdkitError, match=r"full fine-tune checkpoint does not match the model: shapes differ for .* <- ") as ei:
        load_tf_fine_tune(model, config.model, path, "full")
    assert "\n" not in str(ei.value)


def test_fine_tune_checkpoint_options(compat_dir: Path) -> None:
    """apply_fine_tune picks a TF source from the path; V1 is refused as TF2 does; load_all (TF1) takes heads too."""
    from odkit.training.finetune import apply_fine_tune

    fixture = _fixture(compat_dir, FPNLITE)
    model, config = _build(fixture / "pipeline.config")
    tc = config.train_config
    tc.fine_tune_checkpoint = str(fixture / "checkpoint" / "ckpt-0")
    tc.fine_tune_checkpoint_type = "detection"
    tc.fine_tune_checkpoint_version = 1  # V1
    with pytest.raises(OdkitError, match="fine_tune_checkpoint_version V1"):
        apply_fine_tune(model, tc, model_config=config.model)
    tc.fine_tune_checkpoint_version = 2
    rep = apply_fine_tune(model, tc, model_config=config.model)
    assert rep is not None and rep.scope == "model/_feature_extractor" and rep.fresh
    tc.load_all_detection_checkpoint_vars = True
    rep = apply_fine_tune(model, tc, model_config=config.model)
    assert rep is not None and rep.fresh == []
    tc.fine_tune_checkpoint = str(fixture / "missing" / "ckpt-0")
    with pytest.raises(OdkitError):
        apply_fine_tune(model, tc, model_config=config.model)


def _pets_records(shared_dir: Path, out: Path, n: int = 8) -> Path:
    """A tiny pets folder (copies of the first n trainval examples) converted with odkit's pets converter."""
    from odkit.data.converters.pets import create_pet_tfrecord

    src = shared_dir / "datasets" / "oxford_pets_subset"
    if not (src / "annotations" / "trainval.txt").is_file():
        pytest.skip(f"{src} not found")
    data = out / "pets"
    (data / "annotations").mkdir(parents=True)
    lines = [line for line in (src / "annotations" / "trainval.txt").read_text().splitlines()
             if (src / "annotations" / "xmls" / f"{line.split()[0]}.xml").is_file()][:n]
    (data / "annotations" / "trainval.txt").write_text("\n".join(lines) + "\n")
    (data / "annotations" / "xmls").mkdir()
    (data / "images").mkdir()
    for line in lines:
        name = line.split()[0]
        shutil.copyfile(src / "annotations" / "xmls" / f"{name}.xml", data / "annotations" / "xmls" / f"{name}.xml")
        shutil.copyfile(src / "images" / f"{name}.jpg", data / "images" / f"{name}.jpg")
    create_pet_tfrecord(str(data), str(out / "records"), num_shards=1, log=None)
    return out / "records"


def _pets_overrides(records: Path, size: int = 128, num_classes: int | None = 37) -> list[str]:
    ov = [
        f"train_input_reader.tf_record_input_reader.input_path={records / 'pet_faces_train.record-?????-of-00001'}",
        f"train_input_reader.label_map_path={PETS_LABEL_MAP}",
        f"eval_input_reader.0.tf_record_input_reader.input_path={records / 'pet_faces_val.record-?????-of-00001'}",
        f"eval_input_reader.0.label_map_path={PETS_LABEL_MAP}",
        "train_config.batch_size=2",
        f"model.ssd.image_resizer.fixed_shape_resizer.height={size}",
        f"model.ssd.image_resizer.fixed_shape_resizer.width={size}",
    ]
    if num_classes is not None:
        ov.append(f"model.ssd.num_classes={num_classes}")
    return [a for o in ov for a in ("--override", o)]


@pytest.mark.slow
def test_fine_tune_from_fpnlite_zoo_checkpoint_on_pets(shared_dir: Path, compat_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`odkit train` with the zoo config unchanged but paths (+ pets classes, small size): the feature extractor
    starts from the TF values, the heads do not. The feature extractor is frozen (freeze_variables) so its
    parameters can be compared with the TF values after the steps; the heads train."""
    from odkit.tfcompat import open_tf_checkpoint

    fixture = _fixture(compat_dir, FPNLITE)
    records = _pets_records(shared_dir, tmp_path)
    tf_ckpt = fixture / "checkpoint" / "ckpt-0"
    model_dir = tmp_path / "run"
    argv = ["train", "--pipeline_config_path", str(fixture / "pipeline.config"), "--model_dir", str(model_dir),
            "--num_train_steps", "2", "--checkpoint_every_n", "2", "--num_workers", "0", "--device", "cpu",
            "--log_every_n", "1", *_pets_overrides(records),
            "--override", f"train_config.fine_tune_checkpoint={tf_ckpt}",
            "--override", "train_config.fine_tune_checkpoint_type=detection",
            "--config_override", 'train_config { freeze_variables: "^feature_extractor\\\\." }']
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"fine_tune_checkpoint (detection: model/_feature_extractor) {tf_ckpt}: restored" in out
    assert f"full lists in {model_dir / 'fine_tune_report.json'}" in out and "step 2/2" in out
    report = json.loads((model_dir / "fine_tune_report.json").read_text())

    model, config = _build(fixture / "pipeline.config", num_classes=37)
    ckpt = open_tf_checkpoint(tf_ckpt)
    tf = _tf_values(model, config, ckpt)
    trained = ck.read_state_dict(model_dir)
    params = {n for n, _ in model.named_parameters()}
    fe = _restorable(k for k in trained if k.startswith("feature_extractor."))
    assert sorted(report["restored"]) == fe and len(fe) > 250
    assert sorted(report["left_fresh"]) == _restorable(k for k in trained if not k.startswith("feature_extractor."))
    assert all(r["name"].startswith("model/_box_predictor/") for r in report["skipped"])
    # frozen feature-extractor parameters: exactly the TF values (BN moving statistics move in training mode)
    fe_params = [k for k in fe if k in params]
    assert len(fe_params) > 150 and all(_equal(trained[k], tf[k]) for k in fe_params)
    # independent of the mapping's transforms: the first conv kernel, HWIO -> OIHW
    first = ckpt.read("model/_feature_extractor/classification_backbone/layer_with_weights-0/kernel")
    assert any(np.array_equal(trained[k].numpy(), first.transpose(3, 2, 0, 1)) for k in fe_params)
    # heads: not the TF values (class head: 38 vs 91 outputs; box head: same shape, fresh then trained)
    heads = [k for k in trained if k in params and not k.startswith("feature_extractor.")]
    same_shape = [k for k in heads if k in tf]  # the mapping leaves out the class head (shapes differ)
    assert same_shape and len(same_shape) < len(heads)
    assert not any(_equal(trained[k], tf[k]) for k in same_shape)
    meta = json.loads((model_dir / "ckpt-2" / "meta.json").read_text())
    assert np.isfinite(meta["losses"]["Loss/total_loss"])


@pytest.mark.slow
def test_convert_checkpoint_round_trip(shared_dir: Path, compat_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """convert-checkpoint writes D/ckpt-0 + index that load_weights, train (fine-tune and resume) and eval accept."""
    from odkit.tfcompat import open_tf_checkpoint

    fixture = _fixture(compat_dir, FPNLITE)
    cfg = str(fixture / "pipeline.config")
    d = tmp_path / "converted"
    argv = ["convert-checkpoint", "--pipeline_config_path", cfg, "--tf_checkpoint",
            str(fixture / "checkpoint" / "ckpt-0"), "--output_dir", str(d)]
    assert main(argv) == 0, capsys.readouterr().err
    assert (d / "checkpoint").read_text().startswith('model_checkpoint_path: "ckpt-0"')
    assert sorted(p.name for p in d.iterdir()) == ["checkpoint", "ckpt-0", "pipeline.config"]
    model, config = _build(fixture / "pipeline.config", is_training=False)
    loaded = ck.load_weights(model, d)  # strict: every tensor, same names and shapes
    assert loaded.step == 0
    tf = _tf_values(model, config, open_tf_checkpoint(fixture / "checkpoint"))
    state = model.state_dict()
    assert all(_equal(state[k], tf[k]) for k in _restorable(state))
    # nothing is overwritten, and a bad source leaves nothing behind
    assert main(argv) == 2 and "exists and is not empty" in capsys.readouterr().err
    bad = ["convert-checkpoint", "--pipeline_config_path", cfg, "--tf_checkpoint", str(fixture / "checkpoint"),
           "--output_dir", str(tmp_path / "bad"), "--override", "model.ssd.num_classes=3"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "shapes differ for box_predictor." in err
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]

    records = _pets_records(shared_dir, tmp_path / "data")
    common = ["--num_workers", "0", "--device", "cpu"]
    # as fine_tune_checkpoint (odkit format, detection: the feature extractor)
    run = tmp_path / "ft"
    assert main(["train", "--pipeline_config_path", cfg, "--model_dir", str(run), "--num_train_steps", "1",
                 "--override", f"train_config.fine_tune_checkpoint={d}",
                 "--override", "train_config.fine_tune_checkpoint_type=detection", *common,
                 *_pets_overrides(records)]) == 0
    assert f"fine_tune_checkpoint (detection: feature extractor: feature_extractor) {d}" in capsys.readouterr().out
    # eval of the converted checkpoint (the model's 90 COCO classes, on pets records: only that it runs)
    assert main(["eval", "--pipeline_config_path", cfg, "--model_dir", str(tmp_path / "eval"), "--checkpoint_dir",
                 str(d), "--run_once", "--device", "cpu", *_pets_overrides(records, num_classes=None)]) == 0
    assert "step 0" in capsys.readouterr().out
    # as --model_dir to continue from (same classes: the converted checkpoint is the whole model)
    assert main(["train", "--pipeline_config_path", cfg, "--model_dir", str(d), "--num_train_steps", "1",
                 "--override", "train_config.fine_tune_checkpoint=", *common,
                 *_pets_overrides(records, num_classes=None)]) == 0
    assert f"resuming from {d / 'ckpt-0'}" in capsys.readouterr().out
    assert [c.step for c in ck.list_checkpoints(d)] == [0, 1]


class _FakeBundle:
    """What TFModelVariables uses of a TFCheckpoint, over a hand-built object graph."""

    def __init__(self, graph, values: dict[str, np.ndarray]) -> None:  # noqa: ANN001
        from odkit.tfcompat import TFVariable

        self.prefix = Path("fake/variables/variables")
        self.graph = graph
        self.values = values
        self.vars = {k: TFVariable(k, k + "/.ATTRIBUTES/VARIABLE_VALUE", v.dtype, v.shape) for k, v in values.items()}

    def object_graph(self):  # noqa: ANN201
        return self.graph

    def variables(self):  # noqa: ANN201
        return dict(self.vars)

    def read(self, name: str) -> np.ndarray:
        return self.values[name]

    def raw_keys(self) -> list[str]:
        return sorted(v.key for v in self.vars.values())


def _graph(edges: list[tuple[int, str, int]], variables: dict[int, str]):  # noqa: ANN202
    from odkit.protos import tf_trackable_object_graph_pb2 as tog

    g = tog.TrackableObjectGraph()
    for _ in range(1 + max(max(a, b) for a, _, b in edges)):
        g.nodes.add()
    for a, name, b in edges:
        g.nodes[a].children.add(node_id=b, local_name=name)
    for node, key in variables.items():
        g.nodes[node].attributes.add(name="VARIABLE_VALUE", checkpoint_key=key + "/.ATTRIBUTES/VARIABLE_VALUE")
    return g


def test_saved_model_variables_get_checkpoint_names() -> None:
    """exporter_main_v2's SavedModel stores the model under `_model` and each variable under its shortest path,
    often a Keras `variables/N` list; the names a tf.train.Checkpoint(model=...) gives come back (checked on a
    real exported FPN-lite SavedModel too: all 384 names and values equal to its checkpoint/)."""
    from odkit.tfcompat.restore import TFModelVariables

    # 0 root; 1 _model; 2 _feature_extractor; 3 classification_backbone; 4 layer_with_weights-0; 5 kernel;
    # 6 _feature_extractor.variables list; 7 _box_predictor; 8 head; 9 bias; 10 signatures; 11 keras_api
    edges = [(0, "signatures", 10), (0, "_model", 1), (1, "_feature_extractor", 2), (1, "_box_predictor", 7),
             (2, "variables", 6), (6, "0", 5), (2, "keras_api", 11), (11, "trace_0", 9),
             (2, "classification_backbone", 3), (3, "layer_with_weights-0", 4), (4, "kernel", 5),
             (7, "variables", 9), (7, "_prediction_heads", 8), (8, "bias", 9)]
    keys = {5: "_model/_feature_extractor/variables/0", 9: "_model/_box_predictor/variables/0"}
    values = {keys[5]: np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3), keys[9]: np.ones(3, np.float32)}
    view = TFModelVariables(_FakeBundle(_graph(edges, keys), values))
    kernel = "model/_feature_extractor/classification_backbone/layer_with_weights-0/kernel"
    assert view.saved_model and sorted(view.variables()) == ["model/_box_predictor/_prediction_heads/bias", kernel]
    assert view.variables()[kernel].shape == (1, 1, 2, 3) and np.array_equal(view.read(kernel), values[keys[5]])
    assert view.reachable(["model/_feature_extractor"]) == {kernel}
    assert view.reachable(["model"]) == set(view.variables())
    # a plain checkpoint (root `model`) keeps the reader's names; a classification checkpoint is refused
    plain = TFModelVariables(_FakeBundle(_graph([(0, "model", 1), (1, "_feature_extractor", 2), (2, "k", 3)],
                                                {3: "model/_feature_extractor/k"}),
                                         {"model/_feature_extractor/k": np.zeros(2, np.float32)}))
    assert not plain.saved_model and list(plain.variables()) == ["model/_feature_extractor/k"]
    assert plain.reachable(["model/_feature_extractor"]) == {"model/_feature_extractor/k"}
    assert plain.reachable(["model/_box_predictor"]) == set()
    with pytest.raises(OdkitError, match="TF classification checkpoints"):
        TFModelVariables(_FakeBundle(_graph([(0, "feature_extractor", 1), (1, "k", 2)], {2: "feature_extractor/k"}),
                                     {"feature_extractor/k": np.zeros(2, np.float32)}))


def test_is_tf_checkpoint_tells_tf_from_odkit_folders(tmp_path: Path) -> None:
    from odkit.tfcompat.restore import is_tf_checkpoint

    ck.save_checkpoint(tmp_path / "odkit", 3, {"w": torch.zeros(2)})
    assert not is_tf_checkpoint(tmp_path / "odkit") and not is_tf_checkpoint(tmp_path / "odkit" / "ckpt-3")
    assert not is_tf_checkpoint(tmp_path / "odkit" / "checkpoint") and not is_tf_checkpoint(tmp_path / "nothing")
    zoo = tmp_path / "zoo"
    (zoo / "checkpoint").mkdir(parents=True)
    (zoo / "checkpoint" / "ckpt-0.index").write_bytes(b"x")
    (zoo / "checkpoint" / "checkpoint").write_text('model_checkpoint_path: "ckpt-0"\n')
    (zoo / "saved_model" / "variables").mkdir(parents=True)
    (zoo / "saved_model" / "variables" / "variables.index").write_bytes(b"x")
    for p in ("checkpoint/ckpt-0", "checkpoint", "checkpoint/checkpoint", "checkpoint/ckpt-0.index", "saved_model",
              "saved_model/variables", ""):
        assert is_tf_checkpoint(zoo / p), p


def test_convert_checkpoint_refuses_bad_paths_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pipeline.config"
    config.write_text("model { ssd { num_classes: 1 } }\n")
    cases = [
        (["--tf_checkpoint", str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "out")], "not a TF2 checkpoint"),
        (["--tf_checkpoint", str(tmp_path), "--output_dir", str(tmp_path / "no" / "out")],
         "parent folder of the output does not exist"),
        (["--tf_checkpoint", str(tmp_path), "--output_dir", str(config)], "output folder exists and is not empty"),
    ]
    for args, message in cases:
        assert main(["convert-checkpoint", "--pipeline_config_path", str(config), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.config"]
