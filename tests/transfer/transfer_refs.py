"""NumPy references shared by the transfer-term tests."""

import numpy as np


def adaptive_avg_pool(x, size):
    """PyTorch's adaptive_avg_pool2d on a channels-last map, by explicit loops."""
    b, h, w, c = x.shape
    oh, ow = size
    out = np.zeros((b, oh, ow, c), dtype="float64")
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, i, j, :] = x[:, h0:h1, w0:w1, :].mean(axis=(1, 2))
    return out


def to_common_size(t, s):
    """Pools both maps to (min H, min W), as the map-to-map terms do."""
    size = (min(t.shape[1], s.shape[1]), min(t.shape[2], s.shape[2]))
    return adaptive_avg_pool(t, size), adaptive_avg_pool(s, size)


def l2_normalize(x, axis=-1, eps=1e-12):
    """torch.nn.functional.normalize: x / max(||x||_2, eps)."""
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)
