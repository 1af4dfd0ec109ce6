"""Config support: what odkit honours is what its code reads (see odkit.config_check).

HOW A BUILDER DECLARES FIELDS (for everyone adding a model, a head, an input feature):
there is no table to fill in. ``odkit config check`` builds the model, the inputs, the training and
evaluation settings and the export resize from a read-tracking view of the config
(odkit.config.tracking); a set field that your code reads is honoured, one it does not read is reported.

* Support a field: read it in the builder that uses it (``proto.my_field``, ``proto.HasField(...)``,
  ``proto.WhichOneof(...)``), during the build, not later inside ``forward``: copy it into the module or
  a settings dataclass. Values read only at run time (training loop, evaluator) go through
  odkit.training.settings.TrainSettings / odkit.evaluation.settings.EvalSettings / odkit.inputs.builder.InputSpec.
* Refuse a value you do not implement where you read it:
  ``odkit.config.tracking.refuse(proto, "field", "what is not supported", hint="what to do")``
  (an UnsupportedError named by the field's dotted path; a refused block covers everything inside it).
* A field that is accepted on purpose and changes nothing goes in :data:`ACCEPTED` below, with the reason.
* Check with ``odkit config check FILE`` and ``odkit config explain model.x.y``; tests/test_config_check.py
  builds every shared config and checks that each read scalar field changes the built object.
"""

from __future__ import annotations

__all__ = ["ACCEPTED"]

_TPU = "a TF/TPU implementation choice; odkit computes the same result without it"
_ANCHORWISE = "deprecated in the TF OD API; it has no effect there either"
_SHUFFLE = "odkit shuffles with a full permutation per epoch (at least as random as any buffer)"

# Fields accepted on purpose with no effect in odkit, keyed "<ProtoMessageName>.<field>": reason.
# Keep this list short: every entry is a field a user may set and odkit then ignores.
ACCEPTED: dict[str, str] = {
    "ArgMaxMatcher.use_matmul_gather": _TPU,
    "BatchNonMaxSuppression.use_static_shapes": "a TF NMS kernel choice; odkit's NMS gives the same result",
    "BipartiteMatcher.use_matmul_gather": _TPU,
    "BootstrappedSigmoidClassificationLoss.anchorwise_output": _ANCHORWISE,
    "CenterNet.compute_heatmap_sparse": "a TF kernel choice; odkit computes the same heatmap",
    "EvalConfig.eval_instance_masks": "masks are evaluated when metrics_set has coco_mask_metrics",
    "FasterRcnn.resize_masks": "masks reach the model resized and padded with the image either way",
    "FasterRcnn.use_matmul_crop_and_resize": _TPU,
    "FasterRcnn.use_matmul_gather_in_matcher": _TPU,
    "FasterRcnn.use_static_balanced_label_sampler": _TPU,
    "FasterRcnn.use_static_shapes": "odkit always uses padded static shapes",
    "FasterRcnn.use_static_shapes_for_eval": "odkit always uses padded static shapes",
    "Hyperparams.op": "odkit builds conv and fully connected layers from the same hyperparameters",
    "InputReader.filenames_shuffle_buffer_size": _SHUFFLE,
    "InputReader.include_source_id": "source ids are always in the batch",
    "InputReader.shuffle_buffer_size": _SHUFFLE,
    "SigmoidFocalClassificationLoss.anchorwise_output": _ANCHORWISE,
    "Ssd.inplace_batchnorm_update": "PyTorch batch norm always updates its statistics in place",
    "TrainConfig.replicas_to_aggregate": "DDP always aggregates the gradients of every process",
    "TrainConfig.run_fine_tune_checkpoint_dummy_computation": "torch modules own their tensors; no dummy run needed",
    "TrainConfig.sync_replicas": "DDP training is always synchronous",
    "TrainConfig.unpad_groundtruth_tensors": "batches always carry num_boxes; either value gives the same batches",
    "WeightedL2LocalizationLoss.anchorwise_output": _ANCHORWISE,
    "WeightedSigmoidClassificationLoss.anchorwise_output": _ANCHORWISE,
    "WeightedSmoothL1LocalizationLoss.anchorwise_output": _ANCHORWISE,
    "WeightedSoftmaxClassificationLoss.anchorwise_output": _ANCHORWISE,
}
