"""The project's own cross-entropy and focal losses, and information-theory helpers.

Drop-in replacements for the Keras classes of the same names, written with `keras.ops` and
registered for `.keras` saving under the package "xent_lab":

- `BinaryCrossentropy`, `CategoricalCrossentropy`, `SparseCategoricalCrossentropy`
- `BinaryFocalCrossentropy`, `CategoricalFocalCrossentropy`

Laid out like Keras' own losses: `functional` has one pure function per loss (its formula, and where
it differs from Keras: stable forms from logits, float16 computed in float32, label smoothing for
the sparse loss, `gamma="flsd53"`, validation), `classes` the thin `Loss` classes over them, and
`information` the NumPy helpers `entropy`, `cross_entropy`, `kl_divergence`, `smoothed_targets` and
`loss_decomposition` (float64, nats). Label smoothing and the binary pair [1 - p, p] come from
`xent_lab.heads`.
"""

from xent_lab.losses._checks import FLSD53
from xent_lab.losses.classes import (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalCrossentropy,
)
from xent_lab.losses.functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_crossentropy,
)
from xent_lab.losses.information import cross_entropy, entropy, kl_divergence, loss_decomposition, smoothed_targets

__all__ = [
    "FLSD53",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "sparse_categorical_crossentropy",
    "cross_entropy",
    "entropy",
    "kl_divergence",
    "loss_decomposition",
    "smoothed_targets",
]
