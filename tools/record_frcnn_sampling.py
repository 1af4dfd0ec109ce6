r"""Companion to make_tfod_reference.py for Faster R-CNN fixtures: replays the fixture's training-mode
predict + loss (same seed, same call sequence after tf.random.set_seed) with the TF OD API and records
the minibatch samplers' outputs, so the RPN losses (which depend on the randomly sampled anchors) can be
recomputed outside TF. Verifies the replayed losses and sampled proposals equal the fixture's bit for bit
before writing FIXTURE/sampling.npz:
    rpn_sampled_indicator [B, A] bool   first-stage anchors in the loss minibatch
    second_stage_sampled_indicator [B, P] bool   proposals (after first-stage NMS) kept for the 2nd stage
Usage (TF venv, a measuring instrument only; never a dependency of odkit or its tests):
  PYTHONPATH=$TFOD_SRC/research:$TFOD_SRC TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 \
      $TFENV/bin/python tools/record_frcnn_sampling.py FIXTURE_DIR [--seed 0]
tests/test_tf_parity_frcnn.py uses FIXTURE_DIR/sampling.npz when present.
"""
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.environ.get('TFOD_REFERENCE_TOOLS', os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'tools', 'tfod_reference')))
import make_tfod_reference as M  # noqa: E402
from object_detection.utils import config_util  # noqa: E402

fx = sys.argv[1]
seed = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == '--seed' else 0
R = dict(np.load(os.path.join(fx, 'reference.npz')))
model_config = config_util.get_configs_from_pipeline_file(os.path.join(fx, 'pipeline.config'))['model']
n = len([k for k in R if k.startswith('input/image_')])
uint8 = [R[f'input/image_{i}_uint8'] for i in range(n)]
ckpt_path = os.path.join(fx, 'checkpoint', 'ckpt-0')


def provide_gt(m):
    m.provide_groundtruth(
            groundtruth_boxes_list=[tf.constant(R[f'groundtruth/boxes_{i}']) for i in range(n)],
            groundtruth_classes_list=[tf.constant(R[f'groundtruth/classes_onehot_{i}']) for i in range(n)],
            groundtruth_weights_list=[tf.constant(R[f'groundtruth/weights_{i}']) for i in range(n)])


tf.keras.backend.set_learning_phase(0)
tf.random.set_seed(seed)
m = M.build(model_config, is_training=True)
tf.keras.backend.set_learning_phase(1)
images, shapes = M.preprocess_each(m, uint8)
assert np.array_equal(images, R['eval/preprocess/preprocessed_inputs'])
provide_gt(m)
m.predict(tf.constant(images), tf.constant(shapes))
status = tf.train.Checkpoint(model=m).restore(ckpt_path)
status.assert_existing_objects_matched()
status.expect_partial()

records = {'rpn': [], 'second': []}
for key, sampler in (('rpn', m._first_stage_sampler), ('second', m._second_stage_sampler)):
    orig = sampler.subsample

    def wrapped(indicator, batch_size, labels, scope=None, _orig=orig, _key=key):
        out = _orig(indicator, batch_size, labels, scope) if scope is not None else _orig(indicator, batch_size, labels)
        records[_key].append(out.numpy())
        return out
    sampler.subsample = wrapped

tf.random.set_seed(seed)
provide_gt(m)
pred = m.predict(tf.constant(images), tf.constant(shapes))
losses = m.loss(pred, tf.constant(shapes))
for k, v in losses.items():
    ref = R['train/loss/' + k]
    assert np.array_equal(np.float32(v.numpy()), ref), (k, float(v), float(ref))
for k in ('proposal_boxes_normalized', 'num_proposals', 'class_predictions_with_background'):
    assert np.array_equal(pred[k].numpy(), R['train/predict/' + k]), k
out = {'rpn_sampled_indicator': np.stack(records['rpn']),
              'second_stage_sampled_indicator': np.stack(records['second'])}
np.savez_compressed(os.path.join(fx, 'sampling.npz'), **out)
print('replayed losses identical to the fixture; wrote', os.path.join(fx, 'sampling.npz'),
            {k: (v.shape, int(v.sum())) for k, v in out.items()})
