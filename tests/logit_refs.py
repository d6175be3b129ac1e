"""NumPy references of the logit terms, shared by the tests that check them.

They follow the authors' PyTorch code line by line, in float64:
mdistiller's `dkd_loss` (with its -1000 mask on the target logit), the DIST
authors' `inter_class_relation` / `intra_class_relation`, and Sun et al.'s
`normalize` (torch's unbiased std). Imported from tests/ and its sub-folders,
since tests/ is on the path (its conftest).
"""

import numpy as np
from keras.ops import convert_to_numpy as to_numpy


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_standardize(z):
    z = np.asarray(z, "float64")
    std = z.std(axis=-1, ddof=1, keepdims=True)
    return (z - z.mean(axis=-1, keepdims=True)) / (1e-7 + std)


def numpy_kd(t, s, temperature):
    log_p = log_softmax(np.asarray(t, "float64") / temperature)
    log_q = log_softmax(np.asarray(s, "float64") / temperature)
    return temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


def numpy_dkd(t, s, y, alpha, beta, temperature):
    """mdistiller's dkd_loss per example (its batch mean is theirs)."""
    t = np.asarray(t, "float64") / temperature
    s = np.asarray(s, "float64") / temperature
    n, c = t.shape
    gt = np.eye(c, dtype=bool)[to_numpy(y)]
    p_t, p_s = softmax(t), softmax(s)
    b_t = np.stack([p_t[gt], p_t[~gt].reshape(n, c - 1).sum(1)], axis=1)
    b_s = np.stack([p_s[gt], p_s[~gt].reshape(n, c - 1).sum(1)], axis=1)
    tckd = (b_t * (np.log(b_t) - np.log(b_s))).sum(1)
    p_t2 = softmax(t - 1000.0 * gt)
    log_p_s2 = log_softmax(s - 1000.0 * gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p_t2 > 0, p_t2 * (np.log(p_t2) - log_p_s2), 0.0)
    nckd = terms.sum(1)
    return temperature**2 * (alpha * tckd + beta * nckd)


def numpy_pearson_distance(a, b):
    """1 - pearson per row, with the authors' cos = a.b / (|a||b| + 1e-8)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return 1.0 - (a * b).sum(1) / (norms + 1e-8)


def numpy_dist(t, s, beta, gamma, tau):
    """Per example: tau^2 (beta inter_i + gamma intra); its mean is DIST."""
    p_t = softmax(np.asarray(t, "float64") / tau)
    p_s = softmax(np.asarray(s, "float64") / tau)
    inter = numpy_pearson_distance(p_s, p_t)
    intra = numpy_pearson_distance(p_s.T, p_t.T).mean()
    return tau**2 * (beta * inter + gamma * intra)
