"""Data augmentation: the TF OD API preprocessor ops on uint8/float [3,H,W] images + normalized boxes."""

from odkit.inputs.augment.builder import Augmenter, build_augmenter, build_step
from odkit.inputs.augment.sample import Sample, make_sample, to_uint8

__all__ = ["Augmenter", "Sample", "build_augmenter", "build_step", "make_sample", "to_uint8"]
