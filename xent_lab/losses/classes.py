"""The Keras `Loss` classes: thin wrappers that hold the arguments of a function of
`xent_lab.losses.functional` (which has the formula and where it differs from Keras) and call it.

Drop-in replacements for the Keras classes of the same names: same constructor arguments, names,
order and defaults as Keras 3 (`SparseCategoricalCrossentropy` adds `label_smoothing` last), and
registered for `.keras` saving under the package "xent_lab" (registered names "xent_lab>ClassName").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from xent_lab.losses import functional
from xent_lab.losses._checks import check_axis, check_gamma, check_label_smoothing
from xent_lab.losses._ops import Tensor


class _LossFunctionWrapper(keras.losses.Loss):
    """A `Loss` computing `fn(y_true, y_pred, **arguments)`; the arguments are also its attributes
    and, with name, reduction and dtype, its config (so `from_config` is the constructor)."""

    from_logits: bool
    label_smoothing: float
    axis: int

    def __init__(
        self,
        fn: Callable[..., Tensor],
        *,
        reduction: str | None,
        name: str,
        dtype: Any,
        from_logits: bool,
        label_smoothing: float,
        axis: int,
        **arguments: Any,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        # Checked here too, so that a bad argument fails at construction rather than at the first call.
        check_label_smoothing(label_smoothing)
        self.fn = fn
        arguments = {
            "from_logits": from_logits,
            "label_smoothing": label_smoothing,
            "axis": check_axis(axis),
            **arguments,
        }
        self._argument_names = tuple(arguments)
        for key, value in arguments.items():
            setattr(self, key, value)

    def _arguments(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._argument_names}

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        # Keras' Loss.__call__ has converted y_pred to self.dtype, which the functions return.
        return self.fn(y_true, y_pred, **self._arguments())

    def get_config(self) -> dict[str, Any]:
        # Keras' own configs leave out dtype; it is kept here so that a round trip restores it.
        return {**super().get_config(), "dtype": self._dtype_policy.name, **self._arguments()}


@keras.saving.register_keras_serializable(package="xent_lab")
class BinaryCrossentropy(_LossFunctionWrapper):
    """Computes the binary cross-entropy between labels and predictions: `functional.binary_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities in [0, 1]).
        label_smoothing: Float in [0, 1]; when > 0 the labels are squeezed towards 0.5.
            Defaults to `0.0`.
        axis: The axis along which the mean is computed. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"binary_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            functional.binary_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )


@keras.saving.register_keras_serializable(package="xent_lab")
class BinaryFocalCrossentropy(_LossFunctionWrapper):
    """Computes the focal cross-entropy between binary labels and predictions:
    `functional.binary_focal_crossentropy` (Lin et al., 2018).

    Args:
        apply_class_balancing: Whether to weight class 1 by `alpha` and class 0 by `1 - alpha`.
            Defaults to `False`.
        alpha: Weight of class 1 when `apply_class_balancing=True`. Defaults to `0.25`.
        gamma: Focusing parameter, a number >= 0, or `"flsd53"`: 5 where the probability of the
            (unsmoothed) true label is < 0.2, else 3 (Mukhoti et al., 2020; that probability is
            treated as a constant for the gradient). Defaults to `2.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities in [0, 1]).
        label_smoothing: Float in [0, 1]; when > 0 the labels are squeezed towards 0.5.
            Defaults to `0.0`.
        axis: The axis along which the mean is computed. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"binary_focal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    apply_class_balancing: bool
    alpha: float
    gamma: float | str

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            functional.binary_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            apply_class_balancing=apply_class_balancing,
            alpha=alpha,
            gamma=gamma,
        )
        check_gamma(gamma)


@keras.saving.register_keras_serializable(package="xent_lab")
class CategoricalCrossentropy(_LossFunctionWrapper):
    """Computes the cross-entropy between one-hot (or soft) labels and predicted distributions:
    `functional.categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"categorical_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            functional.categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )


@keras.saving.register_keras_serializable(package="xent_lab")
class CategoricalFocalCrossentropy(_LossFunctionWrapper):
    """Computes the alpha-balanced focal cross-entropy between one-hot labels and predictions:
    `functional.categorical_focal_crossentropy` (Lin et al., 2018).

    Args:
        alpha: Scalar weight of every term, or a list of one weight per class. Defaults to `0.25`.
        gamma: Focusing parameter, a number >= 0, or `"flsd53"`: 5 for samples whose true-class
            probability (of the unsmoothed label) is < 0.2, else 3 (Mukhoti et al., 2020; that
            probability is treated as a constant for the gradient). Defaults to `2.0`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        label_smoothing: Float in [0, 1]; when > 0 the targets become
            `y_true * (1 - label_smoothing) + label_smoothing / k`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        name: Name of the loss instance. Defaults to `"categorical_focal_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
    """

    alpha: float | list[float]
    gamma: float | str

    def __init__(
        self,
        alpha: float | Sequence[float] = 0.25,
        gamma: float | str = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            functional.categorical_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            # Plain floats / a list of floats keep the config JSON-serializable.
            alpha=[float(a) for a in alpha] if np.ndim(alpha) == 1 else float(alpha),
            gamma=gamma,
        )
        check_gamma(gamma)


@keras.saving.register_keras_serializable(package="xent_lab")
class SparseCategoricalCrossentropy(_LossFunctionWrapper):
    """Computes the cross-entropy between integer labels and predicted distributions:
    `functional.sparse_categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits. Defaults to `False` (probabilities).
        ignore_class: Optional integer label to leave out of the loss (e.g. a "void" class such as
            -1 or 255 in segmentation maps). Defaults to `None`.
        reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`, as for `keras.losses.Loss`.
        axis: The class axis of `y_pred`. Defaults to `-1`.
        name: Name of the loss instance. Defaults to `"sparse_categorical_crossentropy"`.
        dtype: Dtype of the loss's computations. Defaults to `None`: `keras.config.floatx()`.
        label_smoothing: Float in [0, 1], as for `CategoricalCrossentropy` (not in Keras; last so
            that Keras' positional arguments keep their places). Defaults to `0.0`.
    """

    ignore_class: int | None

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            functional.sparse_categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            ignore_class=ignore_class,
        )
