"""The in-memory dataset handed to the training code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# eq=False: the generated __eq__ would compare arrays with `==`, which has no single truth value.
@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test arrays of one dataset, ready for Keras.

    Labels are int64 class ids of shape (n,). Images are float32 (n, 28, 28, 1) in [0, 1];
    texts are int32 (n, sequence_length) token ids where 0 is padding and 1 the OOV token.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_kind: str  # "image" | "text"
    vocab_size: int | None  # text only: vectorizer vocabulary size, padding and OOV included
    checksums: dict[str, str]  # source file name -> sha256, for provenance

    def __post_init__(self) -> None:
        # Cheap guard against a loader bug pairing the wrong arrays.
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y) or y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(f"{self.name} {split}: {len(x)} inputs vs {len(y)} labels of {y.dtype}{y.shape}")
