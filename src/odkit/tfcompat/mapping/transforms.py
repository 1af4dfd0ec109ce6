"""Array layout transforms from TF variables (numpy) to torch parameters.

Each transform maps a TF array to the odkit layout and works on any array of the TF shape (the plan
builder applies it to a zero array to learn the resulting shape).
"""

from __future__ import annotations

import numpy as np


def identity(a: np.ndarray) -> np.ndarray:
    return a


def conv_kernel(a: np.ndarray) -> np.ndarray:
    """Conv2D kernel HWIO -> OIHW."""
    return np.ascontiguousarray(np.transpose(a, (3, 2, 0, 1)))


def conv_transpose_kernel(a: np.ndarray) -> np.ndarray:
    """Conv2DTranspose kernel (H, W, out, in) -> ConvTranspose2d weight (in, out, H, W)."""
    return np.ascontiguousarray(np.transpose(a, (3, 2, 0, 1)))


def depthwise_kernel(a: np.ndarray) -> np.ndarray:
    """DepthwiseConv2D kernel (H, W, C, M) -> grouped conv weight (C*M, 1, H, W).

    TF's output channel c*M + m is input channel c times multiplier m, as torch's groups=C conv.
    """
    h, w, c, m = a.shape
    return np.ascontiguousarray(np.transpose(a.reshape(h, w, c * m), (2, 0, 1))[:, None])


def dense_kernel(a: np.ndarray) -> np.ndarray:
    """Dense kernel [in, out] -> nn.Linear weight [out, in]."""
    return np.ascontiguousarray(a.T)


def flatten(a: np.ndarray) -> np.ndarray:
    """Any shape -> 1-D (e.g. BiFPN fusion weights stored (n, 1))."""
    return np.ascontiguousarray(a.reshape(-1))


def ones_like(a: np.ndarray) -> np.ndarray:
    """A TF constant the checkpoint does not store (batch norm gamma with scale=False), shaped like ``a``."""
    return np.ones_like(a)
