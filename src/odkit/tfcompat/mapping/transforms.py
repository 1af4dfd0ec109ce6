"""Array layout transforms from TF variables to torch parameters."""

from __future__ import annotations

import numpy as np


def identity(a: np.ndarray) -> np.ndarray:
    return a


def conv_kernel(a: np.ndarray) -> np.ndarray:
    """Conv kernel HWIO -> OIHW."""
    return np.ascontiguousarray(np.transpose(a, (3, 2, 0, 1)))


def dense_kernel(a: np.ndarray) -> np.ndarray:
    """Dense kernel [in, out] -> nn.Linear weight [out, in]."""
    return np.ascontiguousarray(a.T)
