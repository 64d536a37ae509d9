"""Known-answer fidelity metrics: how close translations are to the RIGHT answer, where it is known (synthetic
benchmarks), and where they miss: at edges or on flat areas, by blurring, or by a checkerboard pattern.

Pure numpy. Images are [N, H, W, C] (or [H, W, C]) in [0, 1] pixel units; `y` is the translation (rounded to
8 bit by the caller, as a saved PNG would be), `truth` the right answer of the same shape.

- Edge pixels: where the truth's gradient magnitude exceeds EDGE_THRESHOLD, dilated by one pixel (3x3); all
  other pixels are flat. The gradient magnitude of a pixel is the largest absolute forward difference (to the
  right and downwards) over the channels; the last row / column has no forward neighbour and counts 0 there.
- l1 / l1_edge / l1_flat: mean |y - truth| over all / edge / flat pixels (and channels).
- sharpness: the root-mean-square gradient magnitude of y over the edge pixels divided by the truth's (1 = as
  sharp; blur < 1). Root-mean-square, not the plain mean: blurring a step spreads the same total rise over more
  pixels, which leaves the plain mean over the (dilated) edge pixels almost unchanged.
- checkerboard: the share of an image's non-DC spectral energy (2-D FFT per image and channel of the image minus
  its mean) in the Nyquist row and column (ky = H/2 or kx = W/2: the 2-pixel period), averaged over images and
  channels, of y divided by the truth's (1 = like the truth; >> 1 = a checkerboard). Images (channels) whose
  RMS deviation from their mean is below FLAT_RMS count 0 (nothing to speak of), and CHECKER_EPS is added above
  and below the ratio so a flat truth does not divide by 0. checkerboard_corner: the same ratio on each 8x8
  corner patch, the largest of the four.
- l1_permuted (RGB only): L1 to the nearest truth with its channels in another order (the smallest of the five).
  Below l1, the translation is closer to a channel-swapped answer than to the right one: the sign of a task whose
  two domains' colour distributions are symmetric under that swap, where unpaired data cannot tell the two maps
  apart (docs/translation.md, "Known answers must be identifiable").
"""

from __future__ import annotations

import itertools

import numpy as np

#: Truth gradient magnitude ([0, 1] units) above which a pixel is an edge (before the 3x3 dilation).
EDGE_THRESHOLD = 0.1
#: Side of the corner patches checkerboard_corner looks at.
CORNER = 8
#: Image channels whose RMS deviation from their mean is below this (1/255: one 8-bit level) are flat: E = 0.
FLAT_RMS = 1.0 / 255
#: Added to both mean energy shares of the checkerboard ratio (a flat truth has share 0).
CHECKER_EPS = 1e-3
#: The channel orders of l1_permuted: every one but (R, G, B).
OTHER_CHANNEL_ORDERS = [list(p) for p in itertools.permutations(range(3)) if p != (0, 1, 2)]


def _batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, np.float64)
    return images[None] if images.ndim == 3 else images


def gradient_magnitude(images: np.ndarray) -> np.ndarray:
    """[N, H, W]: per pixel the largest absolute forward difference in x or y over the channels."""
    images = _batch(images)
    dx = np.zeros_like(images)
    dy = np.zeros_like(images)
    dx[:, :, :-1] = np.abs(np.diff(images, axis=2))
    dy[:, :-1] = np.abs(np.diff(images, axis=1))
    return np.maximum(dx, dy).max(axis=-1)


def dilate(mask: np.ndarray) -> np.ndarray:
    """[N, H, W] boolean mask dilated by one pixel (3x3 neighbourhood)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, dy:dy + h, dx:dx + w]
    return out


def edge_mask(truth: np.ndarray) -> np.ndarray:
    """[N, H, W] boolean: the truth's edge pixels (gradient > EDGE_THRESHOLD, dilated 3x3)."""
    return dilate(gradient_magnitude(truth) > EDGE_THRESHOLD)


def masked_l1(y: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean |y - truth| over the masked pixels and all channels; nan for an empty mask."""
    if not mask.any():
        return float("nan")
    return float(np.abs(_batch(y) - _batch(truth)).mean(axis=-1)[mask].mean())


def sharpness(y: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS gradient magnitude of y over the truth's edge pixels / the truth's; nan without edges."""
    mask = edge_mask(truth) if mask is None else mask
    if not mask.any():
        return float("nan")
    reference = np.sqrt(np.mean(gradient_magnitude(truth)[mask] ** 2))
    return float(np.sqrt(np.mean(gradient_magnitude(y)[mask] ** 2)) / reference)


def nyquist_share(images: np.ndarray) -> np.ndarray:
    """[N, C]: each image channel's share of non-DC spectral energy in the Nyquist row and column (0 for a flat
    channel or a side without a Nyquist bin, i.e. odd)."""
    images = _batch(images)
    h, w = images.shape[1:3]
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred, axes=(1, 2))) ** 2  # [N, H, W, C]
    total = power.sum(axis=(1, 2))  # the DC bin is 0 after removing the mean
    nyquist = np.zeros((h, w), bool)
    if h % 2 == 0:
        nyquist[h // 2] = True
    if w % 2 == 0:
        nyquist[:, w // 2] = True
    energy = power[:, nyquist].sum(axis=1)
    # Parseval: total = H*W * sum (x - mean)^2, so RMS < FLAT_RMS <=> total < (H*W)^2 * FLAT_RMS^2.
    flat = total < (h * w) ** 2 * FLAT_RMS**2
    return np.where(flat, 0.0, energy / np.where(flat, 1.0, total))


def checkerboard(y: np.ndarray, truth: np.ndarray) -> float:
    """(mean Nyquist share of y + CHECKER_EPS) / (the truth's + CHECKER_EPS): 1 like the truth, >> 1 a
    checkerboard, < 1 smoother than the truth."""
    return float((nyquist_share(y).mean() + CHECKER_EPS) / (nyquist_share(truth).mean() + CHECKER_EPS))


def corner_patches(images: np.ndarray, size: int = CORNER) -> list[np.ndarray]:
    """The four size x size corner patches (top-left, top-right, bottom-left, bottom-right) of every image."""
    images = _batch(images)
    s = min(size, images.shape[1], images.shape[2])
    return [images[:, :s, :s], images[:, :s, -s:], images[:, -s:, :s], images[:, -s:, -s:]]


def checkerboard_corner(y: np.ndarray, truth: np.ndarray) -> float:
    """The checkerboard ratio of each 8x8 corner patch; the largest of the four."""
    return max(checkerboard(py, pt) for py, pt in zip(corner_patches(y), corner_patches(truth), strict=True))


def l1_permuted(y: np.ndarray, truth: np.ndarray) -> float:
    """Mean |y - truth[..., order]| for the nearest of the other channel orders of an RGB truth."""
    y, truth = _batch(y), _batch(truth)
    return min(float(np.abs(y - truth[..., order]).mean()) for order in OTHER_CHANNEL_ORDERS)


def fidelity(y: np.ndarray, truth: np.ndarray, x: np.ndarray | None = None) -> dict[str, float]:
    """All the metrics of y against the truth; with the untranslated input x also identity_l1 (not translating)."""
    y, truth = _batch(y), _batch(truth)
    if y.shape != truth.shape:
        raise ValueError(f"translations {y.shape} and truths {truth.shape} differ in shape")
    edges = edge_mask(truth)
    result = {"l1": float(np.abs(y - truth).mean())}
    if x is not None:
        result["identity_l1"] = float(np.abs(_batch(x) - truth).mean())
    result.update({"l1_edge": masked_l1(y, truth, edges), "l1_flat": masked_l1(y, truth, ~edges),
                   "edge_fraction": float(edges.mean()), "sharpness": sharpness(y, truth, edges),
                   "checkerboard": checkerboard(y, truth), "checkerboard_corner": checkerboard_corner(y, truth)})
    if truth.shape[-1] == 3:
        result["l1_permuted"] = l1_permuted(y, truth)
    return result
