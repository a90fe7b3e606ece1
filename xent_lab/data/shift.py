"""Shifted copies of a test set, for evaluation under distribution shift (Ovadia et al., "Can You Trust Your
Model's Uncertainty? Evaluating Predictive Uncertainty Under Dataset Shift", NeurIPS 2019).

Each shift maps (x, level, rng) to a new array of the same shape and dtype, made from the data already loaded,
deterministic given the generator. Levels: degrees for `rotate`; severities 1 to 5 for the image corruptions
(0: the data unchanged); a rate in [0, 1] for the text corruptions.

Images are float32 (n, 28, 28, 1) in [0, 1]:
- `rotate`: by the angle in degrees, counterclockwise, bilinear, zero outside the image (Ovadia et al.'s rotated
  MNIST);
- `gaussian_noise`, `gaussian_blur`, `contrast`: the corruptions of Hendrycks & Dietterich (ICLR 2019), formulas
  and severity constants from github.com/hendrycks/robustness, commit 8190fe3, ImageNet-C/create_c/: noise and
  contrast act per pixel, so they take ImageNet-C's constants (make_imagenet_c.py); the blur's sigma is in pixels,
  so it takes those of the closest resolution, 32-pixel CIFAR-10-C (make_cifar_c.py).
Texts are int32 (n, length) token ids, padding 0 at the end, 1 the OOV token (`xent_lab.data.imdb`):
- `word_dropout`: each word dropped with probability `rate`, the rest moved up and padded at the end;
- `oov`: each word replaced by the OOV token with probability `rate`, as a misspelt word is read.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

PAD, OOV = 0, 1  # TextVectorization's padding and out-of-vocabulary ids
NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)  # ImageNet-C gaussian_noise
BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)  # CIFAR-10-C gaussian_blur
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)  # ImageNet-C contrast
SEVERITIES = range(len(NOISE_SIGMA) + 1)  # 0 leaves the data unchanged


def rotate(images: np.ndarray, degrees: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Each image rotated counterclockwise by `degrees` about its centre, same size, zero where nothing maps."""
    out = ndimage.rotate(images, degrees, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
    return np.clip(out, 0, 1).astype(images.dtype)


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """clip(x + N(0, sigma^2), 0, 1) per pixel."""
    if severity == 0:
        return images
    noise = rng.standard_normal(images.shape, dtype=np.float32) * np.float32(NOISE_SIGMA[severity - 1])
    return np.clip(images + noise, 0, 1).astype(images.dtype)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A Gaussian filter of sigma pixels over height and width (skimage's `gaussian`: nearest edges, 4 sigma)."""
    if severity == 0:
        return images
    sigma = BLUR_SIGMA[severity - 1]
    return np.clip(ndimage.gaussian_filter(images, (0, sigma, sigma, 0), mode="nearest"), 0, 1).astype(images.dtype)


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """clip((x - m) c + m, 0, 1), m each image's mean per channel."""
    if severity == 0:
        return images
    means = images.mean(axis=(1, 2), keepdims=True)
    return np.clip((images - means) * CONTRAST[severity - 1] + means, 0, 1).astype(images.dtype)


def word_dropout(ids: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each word (id != PAD) dropped with probability `rate`; the kept words keep their order, padded at the end."""
    keep = (ids != PAD) & (rng.random(ids.shape) >= rate)
    # A stable sort on "dropped" moves the kept words to the front in their order.
    order = np.argsort(~keep, axis=1, kind="stable")
    return np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(ids, order, axis=1), PAD).astype(
        ids.dtype
    )


def oov(ids: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each word (id != PAD) replaced by the OOV id with probability `rate`."""
    return np.where((ids != PAD) & (rng.random(ids.shape) < rate), OOV, ids).astype(ids.dtype)


class Shift(NamedTuple):
    input_kind: str  # "image" | "text": the data it applies to
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    levels: str  # what a level is, for error messages
    valid: Callable[[object], bool]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _severity(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in SEVERITIES


def _rate(value: object) -> bool:
    return _number(value) and 0 <= value <= 1


_SEVERITY = f"a severity from {SEVERITIES[0]} to {SEVERITIES[-1]}"
SHIFTS: dict[str, Shift] = {
    "rotate": Shift("image", rotate, "an angle in degrees", _number),
    "gaussian_noise": Shift("image", gaussian_noise, _SEVERITY, _severity),
    "gaussian_blur": Shift("image", gaussian_blur, _SEVERITY, _severity),
    "contrast": Shift("image", contrast, _SEVERITY, _severity),
    "word_dropout": Shift("text", word_dropout, "a rate in [0, 1]", _rate),
    "oov": Shift("text", oov, "a rate in [0, 1]", _rate),
}


def level_error(name: str, levels: object, input_kind: str) -> str | None:
    """What is wrong with the list of levels configured for shift `name` on `input_kind` data; None if nothing."""
    usable = [shift for shift, spec in SHIFTS.items() if spec.input_kind == input_kind]
    if name not in usable:
        return f"a shift of {input_kind} data: one of {', '.join(usable)}"
    spec = SHIFTS[name]
    if not isinstance(levels, Sequence) or isinstance(levels, str) or not all(map(spec.valid, levels)):
        return f"a list of levels, each {spec.levels}"
    if len(set(levels)) != len(levels):
        return "a list of distinct levels"
    return None


def shifted_sets(
    x: np.ndarray, plan: Mapping[str, Sequence[float]], seed: int
) -> Iterator[tuple[str, float, np.ndarray]]:
    """(name, level, shifted x) for each shift and level of `plan`, one at a time (a set is as large as x). Each
    set has its own generator, seeded by (seed, name, level): the same set whatever else the plan holds."""
    for name, levels in plan.items():
        for level in levels:
            key = zlib.crc32(f"{name}/{level}".encode())
            yield name, level, SHIFTS[name].apply(x, level, np.random.default_rng((seed, key)))
