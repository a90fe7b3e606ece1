"""The project's own cross-entropy and focal losses, and information-theory helpers.

Drop-in replacements for the Keras classes of the same names, written with `keras.ops` and
registered for `.keras` saving under the package "xent_lab":

- `BinaryCrossentropy`, `CategoricalCrossentropy`, `SparseCategoricalCrossentropy`
- `BinaryFocalCrossentropy`, `CategoricalFocalCrossentropy`

and the losses calibration studies compare cross-entropy with, one family per module:

- `sparse_focal`: `SparseCategoricalFocalCrossentropy`, the categorical focal loss on integer labels
  (with `ignore_class`; Keras has none);
- `poly`: `CategoricalPolyCrossentropy`, `BinaryPolyCrossentropy`, Poly-1 = CE + epsilon (1 - p_t)
  (Leng et al., ICLR 2022);
- `brier`: `CategoricalBrier`, sum_k (p_k - y_k)^2 per sample;
- `mmce`: `MMCECrossentropy`, CE + weight * MMCE of the batch, `mmce` for the batch term alone and
  `MMCETerm`, either term as a Keras metric (Kumar, Sarawagi & Jain, ICML 2018);
- `confidence_penalty`: `ConfidencePenaltyCrossentropy`, CE - beta * H(p) (Pereyra et al., 2017);
- `mbls`: `MbLSCrossentropy`, CE + weight * the logit distances beyond a margin (Liu et al., CVPR 2022);
- `mdca`: `MDCACrossentropy`, CE + beta * MDCA of the batch, and `mdca` for the batch term alone
  (Hebbalaguppe et al., CVPR 2022);
- `logitnorm`: `LogitNormCrossentropy`, CE on z / (tau ||z||) (Wei et al., ICML 2022);
- `dual_focal`: `DualFocalCrossentropy`, -(1 - p_y + p_j)^gamma log p_y (Tao, Dong & Xu, ICML 2023);
- `adafocal`: `AdaFocalCrossentropy`, focal loss with one gamma per confidence bin, updated from validation
  calibration after each epoch (Ghosh, Schaaf & Gormley, NeurIPS 2022).

`naive` holds the textbook forms of the first five, under the same names (`loss.impl=naive`, registered
under "xent_lab.naive"): for showing what the stable forms buy, never for training real models.
`registry` has one entry per `loss=NAME` of the config (see its docstring). Importing this package imports
every loss module through it, and so registers every loss, so a saved model with any of them loads as is.

Laid out like Keras' own losses: `functional` has one pure function per loss (its formula, and where
it differs from Keras: stable forms from logits, float16 computed in float32, label smoothing for
the sparse loss, `gamma="flsd53"`, validation), `classes` the thin `Loss` classes over them, and
`information` the NumPy helpers `entropy`, `cross_entropy`, `kl_divergence`, `smoothed_targets` and
`loss_decomposition` (float64, nats). Label smoothing and the binary pair [1 - p, p] come from
`xent_lab.heads`.
"""

# For loading saved models: the registry imports every loss module (a new loss's too), naive the textbook forms.
from xent_lab.losses import naive, registry  # noqa: F401
from xent_lab.losses._checks import FLSD53
from xent_lab.losses.adafocal import AdaFocalCrossentropy, adafocal_crossentropy
from xent_lab.losses.brier import CategoricalBrier, categorical_brier
from xent_lab.losses.classes import (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalCrossentropy,
)
from xent_lab.losses.confidence_penalty import ConfidencePenaltyCrossentropy, confidence_penalty_crossentropy
from xent_lab.losses.dual_focal import DualFocalCrossentropy, dual_focal_crossentropy
from xent_lab.losses.functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_crossentropy,
)
from xent_lab.losses.information import cross_entropy, entropy, kl_divergence, loss_decomposition, smoothed_targets
from xent_lab.losses.logitnorm import LogitNormCrossentropy, logitnorm_crossentropy
from xent_lab.losses.mbls import MbLSCrossentropy, mbls_crossentropy
from xent_lab.losses.mdca import MDCACrossentropy, mdca, mdca_crossentropy
from xent_lab.losses.mmce import MMCECrossentropy, MMCETerm, mmce, mmce_crossentropy
from xent_lab.losses.poly import (
    BinaryPolyCrossentropy,
    CategoricalPolyCrossentropy,
    binary_poly_crossentropy,
    categorical_poly_crossentropy,
)
from xent_lab.losses.sparse_focal import SparseCategoricalFocalCrossentropy, sparse_categorical_focal_crossentropy

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
    "BinaryPolyCrossentropy",
    "CategoricalBrier",
    "CategoricalPolyCrossentropy",
    "MMCECrossentropy",
    "MMCETerm",
    "SparseCategoricalFocalCrossentropy",
    "binary_poly_crossentropy",
    "categorical_brier",
    "categorical_poly_crossentropy",
    "mmce",
    "mmce_crossentropy",
    "sparse_categorical_focal_crossentropy",
    "ConfidencePenaltyCrossentropy",
    "MbLSCrossentropy",
    "MDCACrossentropy",
    "confidence_penalty_crossentropy",
    "mbls_crossentropy",
    "mdca",
    "mdca_crossentropy",
    "AdaFocalCrossentropy",
    "DualFocalCrossentropy",
    "LogitNormCrossentropy",
    "adafocal_crossentropy",
    "dual_focal_crossentropy",
    "logitnorm_crossentropy",
    "cross_entropy",
    "entropy",
    "kl_divergence",
    "loss_decomposition",
    "smoothed_targets",
]
