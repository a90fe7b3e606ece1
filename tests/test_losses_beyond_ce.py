"""The losses beyond cross-entropy (xent_lab.losses: sparse focal, Poly-1, Brier, MMCE, confidence penalty,
MbLS, MDCA, LogitNorm, dual focal, AdaFocal), one test class per loss: values computed by hand from the formulas
(logits and probabilities, sample weights, every reduction), the special cases that reduce to cross-entropy,
agreement with the categorical focal losses (ours and Keras') and with the authors' code re-expressed in NumPy,
`ignore_class`, AdaFocal's gamma update, finite gradients at +-1e4 logits, validation errors and serialization."""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_losses import (
    ATOL,
    BINARY_LOGITS,
    BINARY_PROBS,
    BINARY_Y,
    EXACT_RTOL,
    LABELS,
    LOGITS,
    ONEHOT_Y,
    PROBS,
    REDUCTIONS,
    RTOL,
    WEIGHTS,
    HandComputed,
    assert_same_as,
    categorical_formula,
    random_onehot,
    random_predictions,
    random_weights,
    reduced,
    softmax,
    value_and_grad,
)
from xent_lab import losses
from xent_lab.calibration import brier_score
from xent_lab.losses.adafocal import adafocal_bins, adafocal_gamma_update

ALPHA = [0.2, 0.3, 0.5]
EXTREME_LOGITS = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], "float32")
EXTREME_LABELS = np.array([0, 0, 2, 1])


def onehot(labels, k=3):
    return np.eye(k, dtype="float32")[labels]


def focal_formula(y, p, alpha=ALPHA, gamma=2.0):
    return -(np.asarray(alpha) * (1 - p) ** gamma * y * np.log(p)).sum(axis=-1)


def mmce_formula(y, p, kernel_width=0.4, weighted=False):
    """MMCE_m of the batch written out as the double sum of Kumar et al. (2018), or MMCE_w as the authors' code
    computes it (`mmce_w_reference`)."""
    if weighted:
        return mmce_w_reference(y.argmax(axis=-1), p, kernel_width)
    r, c = p.max(axis=-1), p.argmax(axis=-1) == y.argmax(axis=-1)
    kernel = np.exp(-np.abs(r[:, None] - r[None, :]) / kernel_width)
    return math.sqrt(((c - r)[:, None] * (c - r)[None, :] * kernel).sum() / len(r) ** 2)


def mmce_w_reference(labels, probs, kernel_width=0.4):
    """The authors' `MMCE_weighted.forward` (torrvision/focal_calibration, Losses/mmce.py, commit
    475422a6754e20d25216158a874749c33e826e21) in NumPy, line by line, on the class probabilities (their softmax);
    their kernel width is 0.4."""

    def kernel(a, b):
        return np.exp(-np.abs(a[:, None] - b[None, :]) / kernel_width)

    predicted_probs, predicted_labels = probs.max(axis=1), probs.argmax(axis=1)
    correct_mask = (predicted_labels == labels).astype("float64")
    k, k_p = int(correct_mask.sum()), int((1 - correct_mask).sum())
    if k == 0 or k_p == 0:  # their cond_k * cond_k_p = 0: the result is multiplied by 0
        return 0.0
    correct_prob = np.sort(predicted_probs * correct_mask)[::-1][:k]  # torch.topk
    incorrect_prob = np.sort(predicted_probs * (1 - correct_mask))[::-1][:k_p]
    # get_out_tensor: the mean over each block of kernel * sampling weights.
    correct_correct = np.mean(kernel(correct_prob, correct_prob) * np.outer(1 - correct_prob, 1 - correct_prob))
    wrong_wrong = np.mean(kernel(incorrect_prob, incorrect_prob) * np.outer(incorrect_prob, incorrect_prob))
    correct_wrong = np.mean(kernel(correct_prob, incorrect_prob) * np.outer(1 - correct_prob, incorrect_prob))
    m, n = correct_mask.sum(), (1 - correct_mask).sum()
    mmd_error = 1.0 / (m * m + 1e-5) * correct_correct
    mmd_error += 1.0 / (n * n + 1e-5) * wrong_wrong
    mmd_error -= 2.0 / (m * n + 1e-5) * correct_wrong
    return math.sqrt(mmd_error + 1e-10)


def assert_equal_losses(ours, reference, y_ours, y_reference, y_pred, sample_weight=None):
    np.testing.assert_allclose(
        ours(y_ours, y_pred, sample_weight=sample_weight),
        reference(y_reference, y_pred, sample_weight=sample_weight),
        rtol=RTOL,
        atol=ATOL,
    )


# --------------------------------------------------------------------------------------------
# Per-loss tests
# --------------------------------------------------------------------------------------------


class TestSparseCategoricalFocalCrossentropy(HandComputed):
    loss_class = losses.SparseCategoricalFocalCrossentropy
    function = staticmethod(losses.sparse_categorical_focal_crossentropy)
    kwargs = dict(alpha=ALPHA, gamma=2.0)
    y_true = LABELS
    # Row 0 from probabilities, label 0, p = 0.7: 0.2 * 0.3^2 * -ln 0.7 = 0.018 * 0.35667.
    literal = 0.006420149
    formula = staticmethod(focal_formula)

    def test_gamma_zero_alpha_one_is_sparse_crossentropy(self):
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 4, 7)
        for from_logits in (True, False):
            y_pred = random_predictions(rng, (7, 4), from_logits, "float32", binary=False)
            for ls in (0.0, 0.2):
                kwargs = dict(from_logits=from_logits, label_smoothing=ls)
                focal = losses.SparseCategoricalFocalCrossentropy(alpha=1.0, gamma=0.0, **kwargs)
                assert_equal_losses(focal, losses.SparseCategoricalCrossentropy(**kwargs), labels, labels, y_pred)
            builtin = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
            focal = losses.SparseCategoricalFocalCrossentropy(alpha=1.0, gamma=0.0, from_logits=from_logits)
            assert_equal_losses(focal, builtin, labels, labels, y_pred)

    @pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
    @pytest.mark.parametrize("alpha", [0.25, [0.1, 0.2, 0.3, 0.4]], ids=["scalar_alpha", "per_class_alpha"])
    def test_equals_categorical_focal_on_one_hot(self, from_logits, alpha):
        # Values and gradients, ours and Keras' (Keras has no smoothing-aware sparse focal loss: it is the
        # reference on one-hot labels, inside the logit range where its clipping does not bite).
        rng = np.random.default_rng(1)
        for ls in (0.0, 0.1, 0.3):
            for gamma in (0.0, 0.5, 2.0):
                labels = rng.integers(0, 4, 8)
                y_pred = random_predictions(rng, (8, 4), from_logits, "float32", binary=False)
                kwargs = dict(alpha=alpha, gamma=gamma, from_logits=from_logits, label_smoothing=ls)
                sparse = losses.SparseCategoricalFocalCrossentropy(**kwargs)
                for categorical in (losses.CategoricalFocalCrossentropy, keras.losses.CategoricalFocalCrossentropy):
                    weights = random_weights(rng, 8)
                    assert_same_as(
                        sparse, categorical(**kwargs), labels, y_pred, weights, builtin_y_true=onehot(labels, 4)
                    )
        flsd = dict(alpha=alpha, gamma="flsd53", from_logits=from_logits, label_smoothing=0.1)
        assert_same_as(
            losses.SparseCategoricalFocalCrossentropy(**flsd),
            losses.CategoricalFocalCrossentropy(**flsd),
            labels,
            y_pred,
            builtin_y_true=onehot(labels, 4),
        )

    @pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
    def test_the_label_only_path_is_the_gather_from_every_term_bit_for_bit(self, from_logits, gamma):
        # A scalar alpha, no smoothing: only the label's term is computed. One alpha per class (here all
        # equal) takes every class's term and gathers the label's: values and gradients are the same bits.
        rng = np.random.default_rng(3)
        for k, scale in ((2, 1.0), (10, 1.0), (10, 1e3)):  # scale 1e3: logits up to +-1e4
            labels = rng.integers(0, k, 32)
            y_pred = random_predictions(rng, (32, k), from_logits, "float32", binary=False)
            y_pred = y_pred * np.float32(scale) if from_logits else y_pred
            kwargs = dict(gamma=gamma, from_logits=from_logits, reduction="none")
            fast = value_and_grad(losses.SparseCategoricalFocalCrossentropy(alpha=0.25, **kwargs), labels, y_pred)
            full = value_and_grad(losses.SparseCategoricalFocalCrossentropy(alpha=[0.25] * k, **kwargs), labels, y_pred)
            np.testing.assert_array_equal(fast[0], full[0])
            np.testing.assert_array_equal(fast[1], full[1])

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3, label 1: targets [0.1, 0.8, 0.1], alpha per class, gamma 2.
        loss = losses.SparseCategoricalFocalCrossentropy(alpha=[0.1, 0.7, 0.2], gamma=2.0, label_smoothing=0.3)
        expected = -(
            0.1 * 0.1 * 0.6**2 * math.log(0.4) + 0.8 * 0.7 * 0.6**2 * math.log(0.4) + 0.1 * 0.2 * 0.8**2 * math.log(0.2)
        )
        assert float(loss([[1]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_flsd53_known_values(self):
        # The label's probabilities 0.1 (gamma 5) and 0.4 (gamma 3); alpha = 1.
        loss = losses.SparseCategoricalFocalCrossentropy(gamma="flsd53", alpha=1.0, reduction="none")
        value = loss([0, 1], [[0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
        np.testing.assert_allclose(value, [0.9**5 * -math.log(0.1), 0.6**3 * -math.log(0.4)], rtol=EXACT_RTOL)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
    def test_ignore_class_hand_computed(self, weighted, reduction):
        # Sample 1's label 255 is ignored: its loss is 0 and it is masked out of the reduction.
        loss = losses.SparseCategoricalFocalCrossentropy(alpha=ALPHA, ignore_class=255, reduction=reduction)
        sample_weight = WEIGHTS if weighted else None
        per_sample = np.array([0.2 * 0.3**2 * -math.log(0.7), 0.0, 0.5 * 0.5**2 * -math.log(0.5)])
        expected = reduced(per_sample, reduction, sample_weight, mask=np.array([1.0, 0.0, 1.0]))
        value = loss(np.array([0, 255, 2]), PROBS, sample_weight=sample_weight)
        np.testing.assert_allclose(value, expected, rtol=EXACT_RTOL)

    def test_ignore_class_on_a_sequence_matches_keras_masking(self):
        # gamma = 0, alpha = 1: the same numbers as Keras' sparse CE with ignore_class, pixel mask included.
        rng = np.random.default_rng(2)
        labels = rng.integers(0, 3, (4, 5))
        labels[0, :2] = 255
        x = random_predictions(rng, (4, 5, 3), True, "float32", binary=False)
        for reduction in REDUCTIONS:
            kwargs = dict(from_logits=True, ignore_class=255, reduction=reduction)
            ours = losses.SparseCategoricalFocalCrossentropy(alpha=1.0, gamma=0.0, **kwargs)
            builtin = keras.losses.SparseCategoricalCrossentropy(**kwargs)
            assert_same_as(ours, builtin, labels[..., None], x, random_weights(rng, 20).reshape(4, 5))

    @pytest.mark.parametrize("bad_label", [3, -1, 1.5])
    def test_invalid_labels_raise(self, bad_label):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be integers in \[0, num_classes\)"):
            losses.SparseCategoricalFocalCrossentropy()(np.array([0.0, bad_label]), PROBS[:2])

    def test_alpha_errors(self):
        with pytest.raises(ValueError, match="alpha has 2 weights but y_pred has 3 classes along axis 1"):
            losses.SparseCategoricalFocalCrossentropy(alpha=[0.5, 0.5])([1], [[0.4, 0.4, 0.2]])
        for bad in ([], [[0.5, 0.5]]):
            with pytest.raises(ValueError, match="alpha must be a number or a list of one weight per class"):
                losses.SparseCategoricalFocalCrossentropy(alpha=bad)


class TestCategoricalPolyCrossentropy(HandComputed):
    loss_class = losses.CategoricalPolyCrossentropy
    function = staticmethod(losses.categorical_poly_crossentropy)
    kwargs = dict(epsilon=2.0)
    literal = -math.log(0.7) + 2.0 * 0.3  # row 0 from probabilities: label 0, p = 0.7

    @staticmethod
    def formula(y, p):
        return categorical_formula(y, p) + 2.0 * (1 - (y * p).sum(axis=-1))

    def test_epsilon_zero_is_crossentropy(self):
        rng = np.random.default_rng(3)
        y_true = rng.dirichlet(np.ones(4), 6).astype("float32")  # soft labels too
        for from_logits in (True, False):
            y_pred = random_predictions(rng, (6, 4), from_logits, "float32", binary=False)
            kwargs = dict(from_logits=from_logits, label_smoothing=0.1)
            poly = losses.CategoricalPolyCrossentropy(epsilon=0.0, **kwargs)
            assert_same_as(poly, keras.losses.CategoricalCrossentropy(**kwargs), y_true, y_pred, random_weights(rng, 6))

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3: targets [0.1, 0.8, 0.1], so p_t = 0.04 + 0.32 + 0.02 = 0.38.
        loss = losses.CategoricalPolyCrossentropy(epsilon=1.0, label_smoothing=0.3)
        expected = -(0.1 * math.log(0.4) + 0.8 * math.log(0.4) + 0.1 * math.log(0.2)) + (1 - 0.38)
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_epsilon_minus_one_stays_non_negative(self):
        # -log p + p - 1 >= 0, with equality only at p = 1.
        p = np.array([[0.999, 0.001], [0.5, 0.5], [0.01, 0.99]], "float32")
        value = losses.CategoricalPolyCrossentropy(epsilon=-1.0, reduction="none")(onehot([0, 0, 0], 2), p)
        expected = [-math.log(q) + q - 1 for q in (0.999, 0.5, 0.01)]
        np.testing.assert_allclose(value, expected, rtol=1e-4)
        assert np.all(np.asarray(value) >= 0)


class TestBinaryPolyCrossentropy(HandComputed):
    loss_class = losses.BinaryPolyCrossentropy
    function = staticmethod(losses.binary_poly_crossentropy)
    kwargs = dict(epsilon=2.0)
    binary = True
    y_true = targets = BINARY_Y
    probs, logits = BINARY_PROBS, BINARY_LOGITS
    # Row 0 from probabilities, y = [1, 0], p = [0.8, 0.4]: p_t = [0.8, 0.6],
    # (-ln 0.8 + 2 * 0.2 - ln 0.6 + 2 * 0.4) / 2 = (0.22314 + 0.4 + 0.51083 + 0.8) / 2.
    literal = 0.9669846

    @staticmethod
    def formula(y, p):
        p_t = y * p + (1 - y) * (1 - p)
        return (-np.log(p_t) + 2.0 * (1 - p_t)).mean(axis=-1)

    def test_epsilon_zero_is_crossentropy(self):
        rng = np.random.default_rng(4)
        y_true = rng.uniform(0, 1, (6, 3)).astype("float32")  # soft labels too
        for from_logits in (True, False):
            y_pred = random_predictions(rng, (6, 3), from_logits, "float32", binary=True)
            kwargs = dict(from_logits=from_logits, label_smoothing=0.2)
            poly = losses.BinaryPolyCrossentropy(epsilon=0.0, **kwargs)
            assert_same_as(poly, keras.losses.BinaryCrossentropy(**kwargs), y_true, y_pred, random_weights(rng, 6))

    def test_known_value_with_label_smoothing(self):
        # y = 1 smoothed by 0.2 is 0.9; p = 0.8: p_t = 0.72 + 0.02 = 0.74.
        loss = losses.BinaryPolyCrossentropy(epsilon=1.0, label_smoothing=0.2)
        expected = -(0.9 * math.log(0.8) + 0.1 * math.log(0.2)) + (1 - 0.74)
        assert float(loss([[1.0]], [[0.8]])) == pytest.approx(expected, rel=EXACT_RTOL)


class TestCategoricalBrier(HandComputed):
    loss_class = losses.CategoricalBrier
    function = staticmethod(losses.categorical_brier)
    literal = 0.3**2 + 0.2**2 + 0.1**2  # row 0 from probabilities: label 0, p = [0.7, 0.2, 0.1]

    @staticmethod
    def formula(y, p):
        return ((p - y) ** 2).sum(axis=-1)

    def test_equals_calibration_brier_score(self):
        rng = np.random.default_rng(5)
        labels = rng.integers(0, 5, 200)
        logits = rng.normal(scale=3.0, size=(200, 5)).astype("float32")
        probs = softmax(logits)
        expected = brier_score(probs, labels)
        from_probs = float(losses.CategoricalBrier()(onehot(labels, 5), probs.astype("float32")))
        from_logits = float(losses.CategoricalBrier(from_logits=True)(onehot(labels, 5), logits))
        assert from_probs == pytest.approx(expected, rel=1e-6)
        assert from_logits == pytest.approx(expected, rel=1e-6)

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3: targets [0.1, 0.8, 0.1] against [0.4, 0.4, 0.2].
        loss = losses.CategoricalBrier(label_smoothing=0.3)
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(0.09 + 0.16 + 0.01, rel=EXACT_RTOL)

    def test_gradient_of_probabilities_is_twice_the_residual(self):
        # No clipping: the gradient 2 (p - y) is exact even at p = 0 and 1.
        p = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], "float32")
        y = onehot([0, 2])
        _, grad = value_and_grad(losses.CategoricalBrier(reduction="sum"), y, p)
        # d/dp of sum (p / sum(p) - y)^2 on rows that sum to 1: 2 (p - y) - 2 sum_j (p_j - y_j) p_j.
        residual = p - y
        np.testing.assert_allclose(grad, 2 * residual - 2 * (residual * p).sum(-1, keepdims=True), atol=1e-6)


class TestMMCECrossentropy(HandComputed):
    loss_class = losses.MMCECrossentropy
    function = staticmethod(losses.mmce_crossentropy)
    kwargs = dict(weight=1.5, kernel_width=0.4)
    # Row 0 alone, from probabilities: label 0, p = 0.7, correct, so MMCE = |1 - 0.7| = 0.3.
    literal = -math.log(0.7) + 1.5 * 0.3

    @classmethod
    def formula(cls, y, p):
        extra = {"weighted": cls.kwargs.get("weighted", False), "kernel_width": cls.kwargs["kernel_width"]}
        return categorical_formula(y, p) + cls.kwargs["weight"] * mmce_formula(y, p, **extra)

    def test_known_values_of_the_batch_term(self):
        # r = [0.8 (right), 0.6 (wrong)], k_12 = exp(-0.2 / 0.4): MMCE_m^2 = (0.2^2 + 0.6^2 - 2 0.2 0.6 k_12) / 2^2.
        # MMCE_w, one sample per group (m_C = m_W = 1): (0.2^2 + 0.6^2 - 2 0.2 0.6 k_12) / (1 + 1e-5), + 1e-10.
        y, p = onehot([0, 2]), np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]], "float32")
        squared = 0.04 + 0.36 - 0.24 * math.exp(-0.5)
        assert float(losses.mmce(y, p)) == pytest.approx(math.sqrt(squared) / 2, rel=1e-6)
        expected = math.sqrt(squared / (1 + 1e-5) + 1e-10)  # 0.504410
        assert float(losses.mmce(y, p, weighted=True)) == pytest.approx(expected, rel=1e-6)

    def test_weighted_divides_by_the_group_sizes_twice(self):
        # r = [0.9 (right), 0.7 (right), 0.6 (wrong)]: m_C = 2, m_W = 1; 1 - r on C = [0.1, 0.3], r on W = [0.6].
        # S_CC = 0.1^2 + 0.3^2 + 2 (0.1)(0.3) e^-0.5, S_WW = 0.6^2, S_CW = 0.1 (0.6) e^-0.75 + 0.3 (0.6) e^-0.25,
        # each block averaged (/ m_C^2, / m_W^2, / m_C m_W), then divided by m_C^2 + 1e-5, m_W^2 + 1e-5 and
        # m_C m_W + 1e-5: 0.136392 / 16 + 0.36 - 2 (0.168526) / 4 = 0.284258 (+ 1e-10), MMCE_w = 0.533159.
        y, p = onehot([0, 0, 2]), np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1]], "float32")
        s_cc = 0.01 + 0.09 + 0.06 * math.exp(-0.5)
        s_cw = 0.06 * math.exp(-0.75) + 0.18 * math.exp(-0.25)
        squared = s_cc / (4 * (4 + 1e-5)) + 0.36 / (1 + 1e-5) - 2 * s_cw / (2 * (2 + 1e-5))
        assert squared == pytest.approx(0.284258, abs=1e-6)
        assert float(losses.mmce(y, p, weighted=True)) == pytest.approx(math.sqrt(squared + 1e-10), rel=1e-6)
        assert float(losses.mmce(y, p, weighted=True)) == pytest.approx(0.533159, abs=1e-6)

    @pytest.mark.parametrize("size", [2, 3, 8, 32, 128, 500])
    def test_weighted_equals_the_authors_code(self, size):
        rng = np.random.default_rng(size)
        for scale in (0.3, 2.0, 5.0):  # accuracies from chance to near 1 (a batch of one group included)
            labels = rng.integers(0, 4, size)
            logits = (rng.normal(size=(size, 4)) * scale).astype("float32")
            ours = losses.mmce(onehot(labels, 4), logits, weighted=True, from_logits=True)
            expected = mmce_w_reference(labels, softmax(logits.astype("float64")))
            assert float(ours) == pytest.approx(expected, rel=2e-6, abs=1e-9)
        one_group = losses.mmce(
            onehot(labels, 4), np.eye(4, dtype="float32")[labels] * 20, weighted=True, from_logits=True
        )
        assert float(one_group) == mmce_w_reference(labels, softmax(np.eye(4)[labels] * 20.0)) == 0.0

    def test_term_metrics_add_up_to_the_loss(self):
        # Two batches of 8 and 4: each metric is the mean over the 12 samples, as Keras averages the loss.
        rng = np.random.default_rng(9)
        loss = self.loss_class(from_logits=True, label_smoothing=0.1, **self.kwargs)
        ce, batch_term = loss.term_metrics()
        assert (ce.name, batch_term.name) == ("loss_ce", "loss_mmce")
        settings = (self.kwargs["kernel_width"], self.kwargs.get("weighted", False), True)
        sums = np.zeros(3)  # loss, CE, MMCE, each summed over the samples
        for size in (8, 4):
            y, x = random_onehot(rng, size, 3), random_predictions(rng, (size, 3), True, "float32", binary=False)
            ce.update_state(y, x)
            batch_term.update_state(y, x)
            cross_entropy = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(y, x)
            sums += size * np.array([float(loss(y, x)), float(cross_entropy), float(losses.mmce(y, x, *settings))])
        np.testing.assert_allclose([float(ce.result()), float(batch_term.result())], sums[1:] / 12, rtol=1e-6)
        added = float(ce.result()) + self.kwargs["weight"] * float(batch_term.result())
        assert added == pytest.approx(sums[0] / 12, rel=1e-6) and float(batch_term.result()) > 0
        restored = losses.MMCETerm.from_config(batch_term.get_config())
        assert restored.get_config() == batch_term.get_config() and restored.settings == batch_term.settings

    def test_weighted_is_zero_for_a_batch_of_one_group(self):
        # All correct (r = 0.7, 0.5): MMCE_m = sqrt((0.3^2 + 0.5^2 + 2 0.3 0.5 k) / 4), k = exp(-0.5); MMCE_w = 0.
        y, p = onehot([0, 1]), np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2]], "float32")
        expected = math.sqrt((0.09 + 0.25 + 0.3 * math.exp(-0.5)) / 4)
        assert float(losses.mmce(y, p)) == pytest.approx(expected, rel=1e-6)
        value, grad = value_and_grad(lambda y, p, sample_weight: losses.mmce(y, p, weighted=True), y, p)
        assert float(value) == 0.0 and np.all(grad == 0)

    def test_weight_zero_is_crossentropy(self):
        rng = np.random.default_rng(6)
        y, x = random_onehot(rng, 6, 4), random_predictions(rng, (6, 4), True, "float32", binary=False)
        loss = losses.MMCECrossentropy(weight=0.0, from_logits=True, label_smoothing=0.1)
        assert_same_as(loss, keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), y, x)

    def test_near_zero_when_calibrated_positive_when_over_confident(self):
        # Labels drawn from the predicted distribution: P(argmax correct) = confidence, a calibrated batch.
        # The same labels against logits three times as sharp: over-confident by ~0.2 on average.
        rng = np.random.default_rng(7)
        logits = rng.normal(scale=1.5, size=(3000, 4))
        p = softmax(logits)
        labels = np.array([rng.choice(4, p=row) for row in p])
        y = onehot(labels, 4)
        calibrated, sharp = (float(losses.mmce(y, (f * logits).astype("float32"), from_logits=True)) for f in (1, 3))
        accuracy = (p.argmax(1) == labels).mean()
        confidence = softmax(3 * logits).max(1).mean()
        assert calibrated < 0.05
        assert sharp > 0.5 * (confidence - accuracy) > 0.1
        # MMCE_w, divided by the group sizes, is of the order of 1 / batch on both (measured 0.00024 and 0.00051).
        weighted = [
            float(losses.mmce(y, (f * logits).astype("float32"), weighted=True, from_logits=True)) for f in (1, 3)
        ]
        assert 1e-4 < weighted[0] < 0.5 * weighted[1] < 0.001

    def test_gradient_finite_where_mmce_is_zero(self):
        # Saturated, correct predictions: r = 1 = c exactly, MMCE^2 = 0, and the loss is the cross-entropy.
        x = tf.constant([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]])
        for weighted in (False, True):
            loss = losses.MMCECrossentropy(weighted=weighted, from_logits=True)
            value, grad = value_and_grad(loss, onehot([0, 1]), x)
            assert float(value) == 0.0 and np.all(np.isfinite(grad))

    def test_batch_term_spans_every_position(self):
        # A sequence batch (n, t, k): one MMCE over the n * t positions.
        rng = np.random.default_rng(8)
        y = np.eye(3, dtype="float32")[rng.integers(0, 3, (4, 5))]
        x = random_predictions(rng, (4, 5, 3), True, "float32", binary=False)
        per_position = losses.mmce_crossentropy(y, x, weight=2.0, from_logits=True)
        flat = losses.mmce_crossentropy(y.reshape(20, 3), x.reshape(20, 3), weight=2.0, from_logits=True)
        np.testing.assert_allclose(np.asarray(per_position).ravel(), flat, rtol=RTOL, atol=ATOL)


class TestMMCEWeightedCrossentropy(TestMMCECrossentropy):
    kwargs = dict(weight=1.5, kernel_width=0.3, weighted=True)
    literal = -math.log(0.7)  # row 0 alone: no incorrect sample, so MMCE_w = 0


class TestConfidencePenaltyCrossentropy(HandComputed):
    loss_class = losses.ConfidencePenaltyCrossentropy
    function = staticmethod(losses.confidence_penalty_crossentropy)
    kwargs = dict(beta=0.5)
    # Row 0 from probabilities: label 0, p = [0.7, 0.2, 0.1], H = -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1).
    literal = -math.log(0.7) + 0.5 * (0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))

    @staticmethod
    def formula(y, p):
        return categorical_formula(y, p) + 0.5 * (p * np.log(p)).sum(axis=-1)

    def test_beta_zero_is_crossentropy(self):
        rng = np.random.default_rng(11)
        y_true = rng.dirichlet(np.ones(4), 6).astype("float32")  # soft labels too
        for from_logits in (True, False):
            y_pred = random_predictions(rng, (6, 4), from_logits, "float32", binary=False)
            kwargs = dict(from_logits=from_logits, label_smoothing=0.1)
            loss = losses.ConfidencePenaltyCrossentropy(beta=0.0, **kwargs)
            assert_same_as(loss, keras.losses.CategoricalCrossentropy(**kwargs), y_true, y_pred, random_weights(rng, 6))

    def test_a_uniform_prediction_costs_one_minus_beta_log_k(self):
        # CE = H = ln 4 on a uniform prediction: beta = 2 makes the loss -ln 4; its gradient is softmax - y.
        loss = losses.ConfidencePenaltyCrossentropy(beta=2.0, from_logits=True, reduction="sum")
        value, grad = value_and_grad(loss, onehot([1], 4), np.zeros((1, 4), "float32"))
        assert float(value) == pytest.approx(-math.log(4), rel=EXACT_RTOL)
        # dH/dz = 0 at the maximum of the entropy.
        np.testing.assert_allclose(grad, [[0.25, -0.75, 0.25, 0.25]], atol=1e-7)

    def test_equals_the_mbls_reimplementation(self):
        # by-liu/MbLS, calibrate/losses/penalty_entropy.py (commit dc86503691d1564dc29e2eed66cf7698fbbe4a2c),
        # `PenaltyEntropy.forward`: mean CE - alpha * mean over batch x classes of -p log p (p clamped to
        # [1e-10, 1 - 1e-10]); its alpha is k * beta.
        rng = np.random.default_rng(12)
        labels, x = rng.integers(0, 5, 16), rng.normal(scale=3.0, size=(16, 5))
        log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        prob = np.clip(np.exp(log_p), 1e-10, 1 - 1e-10)
        alpha = 0.4
        reference = -log_p[np.arange(16), labels].mean() - alpha * (-prob * np.log(prob)).mean()
        ours = losses.ConfidencePenaltyCrossentropy(beta=alpha / 5, from_logits=True)
        assert float(ours(onehot(labels, 5), x.astype("float32"))) == pytest.approx(reference, rel=1e-5)


class TestMbLSCrossentropy(HandComputed):
    loss_class = losses.MbLSCrossentropy
    function = staticmethod(losses.mbls_crossentropy)
    kwargs = dict(margin=1.0, weight=0.5)
    # Row 0 from probabilities: label 0, p = [0.7, 0.2, 0.1]; the log-probability distances to the largest
    # are [0, ln 3.5, ln 7] = [0, 1.2528, 1.9459], beyond the margin 1: [0, 0.2528, 0.9459], mean 0.3996.
    literal = -math.log(0.7) + 0.5 * (math.log(3.5) - 1 + math.log(7) - 1) / 3

    @staticmethod
    def formula(y, p):
        distance = np.log(p).max(axis=-1, keepdims=True) - np.log(p)
        return categorical_formula(y, p) + 0.5 * np.maximum(distance - 1.0, 0).mean(axis=-1)

    def test_known_value_and_gradient(self):
        # z = [12, 0, 5], label 0, margin 10: distances [0, 12, 7], only class 1 beyond the margin, by 2:
        # penalty 2 / 3; d/dz of weight * (z_0 - z_1 - 10) / 3 is weight / 3 * [1, -1, 0].
        z = np.array([[12.0, 0.0, 5.0]], "float32")
        loss = losses.MbLSCrossentropy(margin=10.0, weight=0.3, from_logits=True, reduction="sum")
        value, grad = value_and_grad(loss, onehot([0]), z)
        p = softmax(z)
        assert float(value) == pytest.approx(-math.log(p[0, 0]) + 0.3 * 2 / 3, rel=EXACT_RTOL)
        np.testing.assert_allclose(grad, p - onehot([0]) + 0.1 * np.array([[1, -1, 0]]), atol=1e-6)

    def test_distances_within_the_margin_or_weight_zero_is_crossentropy(self):
        rng = np.random.default_rng(13)
        y = random_onehot(rng, 6, 4)
        x = random_predictions(rng, (6, 4), True, "float32", binary=False)  # logits within +-6: distances < 12
        builtin = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
        for kwargs in (dict(margin=12.0), dict(margin=0.0, weight=0.0)):
            loss = losses.MbLSCrossentropy(from_logits=True, label_smoothing=0.1, **kwargs)
            assert_same_as(loss, builtin, y, x, random_weights(rng, 6))

    def test_equals_the_authors_code(self):
        # by-liu/MbLS, calibrate/losses/logit_margin_l1.py (commit dc86503691d1564dc29e2eed66cf7698fbbe4a2c),
        # `LogitMarginL1.forward` with its defaults margin 10, alpha 0.1: mean CE + alpha * mean over
        # batch x classes of relu(max z - z - margin).
        rng = np.random.default_rng(14)
        labels, x = rng.integers(0, 5, 16), rng.normal(scale=8.0, size=(16, 5))
        log_p = x - x.max(axis=1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
        diff = x.max(axis=1, keepdims=True) - x
        reference = -log_p[np.arange(16), labels].mean() + 0.1 * np.maximum(diff - 10, 0).mean()
        assert np.maximum(diff - 10, 0).mean() > 0.5  # the margin bites
        ours = losses.MbLSCrossentropy(from_logits=True)
        assert float(ours(onehot(labels, 5), x.astype("float32"))) == pytest.approx(reference, rel=1e-5)


class TestMDCACrossentropy(HandComputed):
    loss_class = losses.MDCACrossentropy
    function = staticmethod(losses.mdca_crossentropy)
    kwargs = dict(beta=2.0)
    # Row 0 alone, from probabilities: label 0, p = [0.7, 0.2, 0.1]: MDCA = (0.3 + 0.2 + 0.1) / 3 = 0.2.
    literal = -math.log(0.7) + 2.0 * 0.2

    @staticmethod
    def formula(y, p):
        return categorical_formula(y, p) + 2.0 * np.abs(p.mean(axis=0) - y.mean(axis=0)).mean()

    def test_known_values_of_the_batch_term(self):
        # Mean p = [0.45, 0.35, 0.2] against label frequencies [0.5, 0, 0.5]: (0.05 + 0.35 + 0.3) / 3.
        y, p = onehot([0, 2]), np.array([[0.8, 0.1, 0.1], [0.1, 0.6, 0.3]], "float32")
        assert float(losses.mdca(y, p)) == pytest.approx(0.7 / 3, rel=1e-6)
        # Each class predicted as often as it occurs: 0, with a zero gradient.
        value, grad = value_and_grad(
            lambda y, p, sample_weight: losses.mdca(y, p), onehot([0, 1], 2), np.array([[0.5, 0.5], [0.5, 0.5]])
        )
        assert float(value) == 0.0 and np.all(grad == 0)

    def test_beta_zero_is_crossentropy(self):
        rng = np.random.default_rng(15)
        y, x = random_onehot(rng, 6, 4), random_predictions(rng, (6, 4), True, "float32", binary=False)
        loss = losses.MDCACrossentropy(beta=0.0, from_logits=True, label_smoothing=0.1)
        assert_same_as(loss, keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), y, x)

    def test_equals_the_authors_code(self):
        # mdca-loss/MDCA-Calibration, solvers/loss.py (commit cece2e5acb5acb8738f6f80f9592a20d211d1c33),
        # `ClassficationAndMDCA` with loss="NLL+MDCA": mean CE + beta * MDCA, where `MDCA.forward` sums
        # |mean(softmax[:, c]) - mean(target == c)| over the classes and divides by their number.
        rng = np.random.default_rng(16)
        labels, x = rng.integers(0, 5, 32), rng.normal(scale=3.0, size=(32, 5))
        output = softmax(x)
        mdca = sum(abs(output[:, c].mean() - (labels == c).mean()) for c in range(5)) / 5
        reference = -np.log(output[np.arange(32), labels]).mean() + 1.0 * mdca
        ours = losses.MDCACrossentropy(from_logits=True)
        assert float(ours(onehot(labels, 5), x.astype("float32"))) == pytest.approx(reference, rel=1e-5)

    def test_label_smoothing_smooths_only_the_crossentropy(self):
        # ls = 0.3 on one sample: CE against [0.8, 0.1, 0.1], MDCA against the label [1, 0, 0] as given.
        loss = losses.MDCACrossentropy(beta=1.0, label_smoothing=0.3)
        expected = -(0.8 * math.log(0.7) + 0.1 * math.log(0.2) + 0.1 * math.log(0.1)) + 0.2
        assert float(loss(onehot([0]), PROBS[:1])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_batch_term_spans_every_position(self):
        # A sequence batch (n, t, k): one MDCA over the n * t positions.
        rng = np.random.default_rng(17)
        y = np.eye(3, dtype="float32")[rng.integers(0, 3, (4, 5))]
        x = random_predictions(rng, (4, 5, 3), True, "float32", binary=False)
        per_position = losses.mdca_crossentropy(y, x, beta=2.0, from_logits=True)
        flat = losses.mdca_crossentropy(y.reshape(20, 3), x.reshape(20, 3), beta=2.0, from_logits=True)
        np.testing.assert_allclose(np.asarray(per_position).ravel(), flat, rtol=RTOL, atol=ATOL)


class TestLogitNormCrossentropy(HandComputed):
    """The formula reads logits: `y_pred` from logits, log p from probabilities."""

    loss_class = losses.LogitNormCrossentropy
    function = staticmethod(losses.logitnorm_crossentropy)
    kwargs = dict(tau=0.5)
    # Row 0 from probabilities: z = ln [0.7, 0.2, 0.1] = [-0.356675, -1.609438, -2.302585], ||z|| + 1e-7 = 2.831856,
    # z / (0.5 * 2.831856) = [-0.251902, -1.136667, -1.626202]: -ln(e^-0.251902 / (e^-0.251902 + e^-1.136667 +
    # e^-1.626202)) = -ln(0.777324 / 1.294850).
    literal = 0.5103222
    # Row 0 from logits: z = [2, 1, 0], ||z|| = sqrt(5), z / (0.5 sqrt(5)) = [1.788854, 0.894427, 0]:
    # ln(e^1.788854 + e^0.894427 + 1) - 1.788854.
    literal_from_logits = 0.4548857

    @staticmethod
    def formula(y, z, tau=0.5):
        """The authors' `LogitNormLoss.forward` (hongxin001/logitnorm_ood, common/loss_function.py, commit
        0a60eeffb7dfc970fe68e07c5649ea1c9c8244c6) in NumPy: `x / (torch.norm(x, dim=-1) + 1e-7) / t`, then the
        cross-entropy (with soft targets y)."""
        normalized = z / (np.sqrt((z**2).sum(axis=-1, keepdims=True)) + 1e-7) / tau
        return -(y * (normalized - np.log(np.exp(normalized).sum(axis=-1, keepdims=True)))).sum(axis=-1)

    def expected(self, from_logits):
        z = self.logits.astype("float64") if from_logits else np.log(self.probs.astype("float64"))
        return self.formula(self.targets.astype("float64"), z)

    def test_formula_matches_the_arithmetic(self):
        assert self.expected(False)[0] == pytest.approx(self.literal, rel=1e-6)
        assert self.expected(True)[0] == pytest.approx(self.literal_from_logits, rel=1e-6)

    def test_equals_the_authors_formula(self):
        rng = np.random.default_rng(11)
        y = random_onehot(rng, 16, 5)
        z = rng.normal(scale=4.0, size=(16, 5)).astype("float32")
        for tau in (0.01, 0.04, 1.0):
            value = losses.LogitNormCrossentropy(tau=tau, from_logits=True, reduction="none")(y, z)
            np.testing.assert_allclose(value, self.formula(y, z.astype("float64"), tau), rtol=1e-5, atol=1e-6)

    def test_scale_of_the_logits_does_not_matter(self):
        # z and 100 z have the same direction: the same loss (the epsilon aside), where CE would fall to ~0.
        loss = losses.LogitNormCrossentropy(tau=0.5, from_logits=True, reduction="none")
        np.testing.assert_allclose(loss(ONEHOT_Y, LOGITS), loss(ONEHOT_Y, 100 * LOGITS), rtol=1e-6)

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3: targets [0.1, 0.8, 0.1] against the normalized logits [1.788854, 0.894427, 0] (tau 0.5).
        loss = losses.LogitNormCrossentropy(tau=0.5, from_logits=True, label_smoothing=0.3)
        log_total = math.log(math.exp(1.7888544) + math.exp(0.8944272) + 1.0)
        expected = 0.1 * (log_total - 1.7888544) + 0.8 * (log_total - 0.8944272) + 0.1 * log_total
        assert float(loss([[0, 1, 0]], [[2.0, 1.0, 0.0]])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_zero_logits_have_finite_gradients(self):
        value, grad = value_and_grad(losses.LogitNormCrossentropy(from_logits=True), onehot([0]), np.zeros((1, 3)))
        assert float(value) == pytest.approx(math.log(3), rel=1e-6) and np.all(np.isfinite(grad))


def dual_focal_reference(labels, logits, gamma):
    """The authors' `DualFocalLoss.forward` (Linwei94/ICML2023-DualFocalLoss, dual_focal_loss.py, commit
    106f26bed6a80280e7d0577bdf6b26dcd73cb01c) in NumPy, per sample: p_j is the top-1 of `p * (p < p_k)`."""
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    p = np.exp(log_p)
    logp_k = log_p[np.arange(len(labels)), labels]
    p_k = np.exp(logp_k)
    p_j = (p * (p < p_k[:, None])).max(axis=-1)
    return -((1 - p_k + p_j) ** gamma) * logp_k


class TestDualFocalCrossentropy(HandComputed):
    loss_class = losses.DualFocalCrossentropy
    function = staticmethod(losses.dual_focal_crossentropy)
    kwargs = dict(gamma=2.0)
    # Row 0 from probabilities, label 0, p = [0.7, 0.2, 0.1]: p_j = 0.2, (1 - 0.7 + 0.2)^2 * -ln 0.7 = 0.25 * 0.356675.
    literal = 0.08916874

    @staticmethod
    def formula(y, p, gamma=2.0):
        below = p[..., None, :] < p[..., :, None]  # [c, j]: p_j < p_c
        p_j = np.where(below, p[..., None, :], 0.0).max(axis=-1)
        return -(y * (1 - p + p_j) ** gamma * np.log(p)).sum(axis=-1)

    @pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
    def test_equals_the_authors_formula(self, gamma):
        rng = np.random.default_rng(12)
        labels = rng.integers(0, 5, 32)
        z = rng.normal(scale=3.0, size=(32, 5)).astype("float32")
        z[:4] = [1.0, 1.0, 0.0, -1.0, 2.0]  # ties: a class as probable as the label is not below it
        value = losses.DualFocalCrossentropy(gamma=gamma, from_logits=True, reduction="none")(onehot(labels, 5), z)
        expected = dual_focal_reference(labels, z.astype("float64"), gamma)
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7)

    def test_p_j_is_the_largest_probability_below_the_labels(self):
        # Label 0 with p = [0.2, 0.7, 0.1]: p_j = 0.1 (below 0.2), not 0.7. Label 2 (the smallest): p_j = 0.
        loss = losses.DualFocalCrossentropy(gamma=2.0, reduction="none")
        p = np.array([[0.2, 0.7, 0.1], [0.2, 0.7, 0.1]], "float32")
        expected = [0.9**2 * -math.log(0.2), 0.9**2 * -math.log(0.1)]
        np.testing.assert_allclose(loss(onehot([0, 2]), p), expected, rtol=EXACT_RTOL)

    def test_gamma_zero_is_crossentropy(self):
        rng = np.random.default_rng(13)
        y, x = random_onehot(rng, 6, 4), random_predictions(rng, (6, 4), True, "float32", binary=False)
        loss = losses.DualFocalCrossentropy(gamma=0.0, from_logits=True, label_smoothing=0.1)
        assert_same_as(loss, keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), y, x)

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3: targets [0.1, 0.8, 0.1] against [0.4, 0.4, 0.2]; p_j = 0.2 for both 0.4s (a tie is not
        # below), 0 for 0.2: factors 0.8^2, 0.8^2, 0.8^2.
        loss = losses.DualFocalCrossentropy(gamma=2.0, label_smoothing=0.3)
        expected = -0.64 * (0.1 * math.log(0.4) + 0.8 * math.log(0.4) + 0.1 * math.log(0.2))
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)


def adafocal_reference(labels, logits, gammas, edges):
    """The authors' `AdaFocal.get_gamma_per_sample` and `forward` (3mcloud/adafocal, losses/adafocal.py, commit
    f2c6ca06d2967e3d5fcaecc53222ef16a08abd48) in NumPy, per sample; `edges`: every bin's lower and upper boundary."""
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    logpt = log_p[np.arange(len(labels)), labels]
    pt = np.exp(logpt)
    n_bins = len(gammas)
    chosen = []
    for sample in pt:
        for bin_no in range(n_bins):
            lower, upper = edges[bin_no], edges[bin_no + 1]
            if bin_no == 0 and sample < upper or bin_no == n_bins - 1 and sample >= lower or lower <= sample < upper:
                break
        chosen.append(gammas[bin_no])
    gamma = np.array(chosen)
    return -((1 - np.sign(gamma) * pt + 1e-20) ** np.abs(gamma)) * logpt


class TestAdaFocalCrossentropy(HandComputed):
    """Before any update: gamma 1 in every bin, a focal loss with gamma 1."""

    loss_class = losses.AdaFocalCrossentropy
    function = staticmethod(
        lambda y, p, **kwargs: losses.adafocal_crossentropy(y, p, np.ones(15), np.linspace(0, 1, 16)[1:-1], **kwargs)
    )
    # Row 0 from probabilities, label 0, p = 0.7: (1 - 0.7) * -ln 0.7 = 0.3 * 0.356675.
    literal = 0.1070025

    @staticmethod
    def formula(y, p):
        return -(y * (1 - p) * np.log(p)).sum(axis=-1)

    def test_known_values_per_bin(self):
        # Two bins split at 0.5, gammas [2, -1]: p_t = 0.3 is focal with gamma 2, p_t = 0.7 and p_t = 0.5 (the
        # edge belongs to the upper bin) inverse focal with |gamma| 1.
        loss = losses.AdaFocalCrossentropy(n_bins=2, reduction="none")
        loss.gammas.assign([2.0, -1.0])
        p = np.array([[0.3, 0.5, 0.2], [0.7, 0.2, 0.1], [0.5, 0.3, 0.2]], "float32")
        expected = [0.7**2 * -math.log(0.3), 1.7 * -math.log(0.7), 1.5 * -math.log(0.5)]
        np.testing.assert_allclose(loss(onehot([0, 0, 0]), p), expected, rtol=EXACT_RTOL)

    def test_equals_the_authors_formula(self):
        rng = np.random.default_rng(14)
        labels = rng.integers(0, 4, 64)
        z = rng.normal(scale=2.0, size=(64, 4)).astype("float32")
        # Equal-mass edges of some confidences, and gammas on both sides of the switch.
        edges, _ = adafocal_bins(rng.uniform(0.25, 1.0, 200), rng.uniform(size=200) < 0.7, 6)
        gammas = np.array([-2.0, -0.2, 0.2, 1.0, 3.5, 20.0])
        loss = losses.AdaFocalCrossentropy(n_bins=6, from_logits=True, reduction="none")
        loss.gammas.assign(gammas)
        loss.edges.assign(edges[1:-1])
        expected = adafocal_reference(labels, z.astype("float64"), gammas, edges.astype("float32"))
        np.testing.assert_allclose(loss(onehot(labels, 4), z), expected, rtol=1e-5, atol=1e-7)

    def test_gamma_update_on_literal_numbers(self):
        gammas = [1.0, 0.5, -1.0, 0.21, -0.21, 15.0, -1.9]
        gaps = [0.1, -0.2, 0.1, -0.1, 0.1, 0.5, -0.1]
        expected = [
            math.exp(0.1),  # over-confident: focus more
            0.5 * math.exp(-0.2),  # under-confident: focus less
            -math.exp(-0.1),  # inverse focal, over-confident: |gamma| shrinks
            -0.2,  # 0.21 e^-0.1 = 0.190 < 0.2: switches to inverse focal
            0.2,  # -0.21 e^-0.1 = -0.190: switches back to focal
            20.0,  # 15 e^0.5 = 24.7, clipped to gamma_max
            -2.0,  # -1.9 e^0.1 = -2.10, clipped to gamma_min
        ]
        np.testing.assert_allclose(adafocal_gamma_update(gammas, gaps), expected, rtol=1e-12)

    def test_bins_on_literal_numbers(self):
        # Ranks linspace(0, 6, 3) = [0, 3, 6] of the sorted confidences: edges [0.5, 0.8, 0.95]. Bin 0 is
        # (0.5, 0.8]: 0.6, 0.7, 0.8 (0.5, the smallest, is in no bin, as theirs), 2 of 3 right: gap 0.7 - 2/3.
        # Bin 1 is (0.8, 0.95]: 0.9, 0.95, both right: gap 0.925 - 1.
        confidence = np.array([0.9, 0.5, 0.6, 0.8, 0.7, 0.95])
        correct = np.array([1, 0, 1, 0, 1, 1], bool)
        edges, gaps = adafocal_bins(confidence, correct, 2)
        np.testing.assert_allclose(edges, [0.5, 0.8, 0.95])
        np.testing.assert_allclose(gaps, [0.7 - 2 / 3, 0.925 - 1.0])

    def test_update_writes_the_state_the_loss_reads(self):
        loss = losses.AdaFocalCrossentropy(n_bins=2, reduction="none")
        confidence = np.array([0.9, 0.5, 0.6, 0.8, 0.7, 0.95])
        gammas = loss.update(confidence, np.array([1, 0, 1, 0, 1, 1], bool))
        np.testing.assert_allclose(gammas, [math.exp(0.7 - 2 / 3), math.exp(0.925 - 1.0)], rtol=1e-12)
        np.testing.assert_allclose(loss.gammas.numpy(), gammas, rtol=1e-6)
        np.testing.assert_allclose(loss.edges.numpy(), [0.8])
        # p_t = 0.7 now falls in bin 0 (below 0.8), p_t = 0.9 in bin 1.
        p = np.array([[0.7, 0.2, 0.1], [0.9, 0.05, 0.05]], "float32")
        expected = [0.3 ** gammas[0] * -math.log(0.7), 0.1 ** gammas[1] * -math.log(0.9)]
        # A function compiled (by XLA, as Keras' train step on a GPU) before the next update reads the variables, not
        # the values they had then.
        traced = tf.function(lambda y, p: loss(y, p), jit_compile=True)
        np.testing.assert_allclose(traced(onehot([0, 0]), p), expected, rtol=1e-6)
        loss.gammas.assign([3.0, 3.0])
        expected = [0.3**3 * -math.log(0.7), 0.1**3 * -math.log(0.9)]
        np.testing.assert_allclose(traced(onehot([0, 0]), p), expected, rtol=1e-6)

    def test_known_value_with_label_smoothing(self):
        # ls = 0.3, k = 3: targets [0.1, 0.8, 0.1] against [0.4, 0.4, 0.2]; two bins at 0.3, gammas [-1, 2]: the
        # 0.4s focal with gamma 2, the 0.2 inverse focal with |gamma| 1.
        loss = losses.AdaFocalCrossentropy(n_bins=2, label_smoothing=0.3)
        loss.gammas.assign([-1.0, 2.0])
        loss.edges.assign([0.3])
        expected = -(0.9 * 0.6**2 * math.log(0.4) + 0.1 * 1.2 * math.log(0.2))
        assert float(loss([[0, 1, 0]], [[0.4, 0.4, 0.2]])) == pytest.approx(expected, rel=EXACT_RTOL)

    def test_inverse_focal_gradients_finite_at_extreme_logits(self):
        loss = losses.AdaFocalCrossentropy(n_bins=1, from_logits=True)
        for gamma in (-2.0, -0.2, 0.2):
            loss.gammas.assign([gamma])
            value, grad = value_and_grad(loss, onehot(EXTREME_LABELS), EXTREME_LOGITS)
            assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad != 0), (gamma, value, grad)


# --------------------------------------------------------------------------------------------
# Across the new losses
# --------------------------------------------------------------------------------------------

CLASSES = [
    losses.SparseCategoricalFocalCrossentropy,
    losses.CategoricalPolyCrossentropy,
    losses.BinaryPolyCrossentropy,
    losses.CategoricalBrier,
    losses.MMCECrossentropy,
    losses.ConfidencePenaltyCrossentropy,
    losses.MbLSCrossentropy,
    losses.MDCACrossentropy,
    losses.LogitNormCrossentropy,
    losses.DualFocalCrossentropy,
    losses.AdaFocalCrossentropy,
]
FUNCTIONS = {
    losses.SparseCategoricalFocalCrossentropy: losses.sparse_categorical_focal_crossentropy,
    losses.CategoricalPolyCrossentropy: losses.categorical_poly_crossentropy,
    losses.BinaryPolyCrossentropy: losses.binary_poly_crossentropy,
    losses.CategoricalBrier: losses.categorical_brier,
    losses.MMCECrossentropy: losses.mmce_crossentropy,
    losses.ConfidencePenaltyCrossentropy: losses.confidence_penalty_crossentropy,
    losses.MbLSCrossentropy: losses.mbls_crossentropy,
    losses.MDCACrossentropy: losses.mdca_crossentropy,
    losses.LogitNormCrossentropy: losses.logitnorm_crossentropy,
    losses.DualFocalCrossentropy: losses.dual_focal_crossentropy,
    losses.AdaFocalCrossentropy: losses.adafocal_crossentropy,
}
# The constructors other code is configured with: argument names and defaults, in order.
COMMON = [("from_logits", False), ("label_smoothing", 0.0), ("axis", -1)]
SIGNATURES = {
    losses.SparseCategoricalFocalCrossentropy: [
        ("alpha", 0.25),
        ("gamma", 2.0),
        ("from_logits", False),
        ("ignore_class", None),
        ("label_smoothing", 0.0),
        ("axis", -1),
    ],  # fmt: skip
    losses.CategoricalPolyCrossentropy: [
        ("epsilon", 1.0),
        ("from_logits", False),
        ("label_smoothing", 0.0),
        ("axis", -1),
    ],
    losses.BinaryPolyCrossentropy: [("epsilon", 1.0), ("from_logits", False), ("label_smoothing", 0.0), ("axis", -1)],
    losses.CategoricalBrier: COMMON,
    losses.MMCECrossentropy: [
        ("weight", 1.0),
        ("kernel_width", 0.4),
        ("weighted", False),
        ("from_logits", False),
        ("label_smoothing", 0.0),
        ("axis", -1),
    ],  # fmt: skip
    losses.ConfidencePenaltyCrossentropy: [("beta", 0.1), *COMMON],
    losses.MbLSCrossentropy: [("margin", 10.0), ("weight", 0.1), *COMMON],
    losses.MDCACrossentropy: [("beta", 1.0), *COMMON],
    losses.LogitNormCrossentropy: [("tau", 0.01), *COMMON],
    losses.DualFocalCrossentropy: [("gamma", 5.0), *COMMON],
    losses.AdaFocalCrossentropy: [
        ("n_bins", 15),
        ("gamma_initial", 1.0),
        ("lam", 1.0),
        ("switch", 0.2),
        ("gamma_min", -2.0),
        ("gamma_max", 20.0),
        *COMMON,
    ],
}


def labels_for(cls, labels, k=3):
    if cls is losses.SparseCategoricalFocalCrossentropy:
        return labels
    return onehot(labels, k)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_signature_and_registered_name(cls):
    params = [(p.name, p.default) for p in inspect.signature(cls).parameters.values()]
    tail = [("reduction", "sum_over_batch_size"), ("name", FUNCTIONS[cls].__name__), ("dtype", None)]
    assert params == [*SIGNATURES[cls], *tail]
    assert keras.saving.get_registered_object(f"xent_lab>{cls.__name__}") is cls


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_gradients_finite_at_extreme_logits(cls, ls):
    loss = cls(from_logits=True, label_smoothing=ls)
    value, grad = value_and_grad(loss, labels_for(cls, EXTREME_LABELS), EXTREME_LOGITS)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
    assert np.any(grad != 0)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_float16_is_computed_in_float32(cls):
    rng = np.random.default_rng(9)
    labels, x = rng.integers(0, 3, 6), random_predictions(rng, (6, 3), True, "float32", binary=False)
    y = labels_for(cls, labels)
    half = cls(from_logits=True, dtype="float16", reduction="none")(y, x.astype("float16"))
    full = cls(from_logits=True, reduction="none")(y, x.astype("float16").astype("float32"))
    assert half.dtype == "float16"
    # float16 rounding of the result (subnormal below 6e-5).
    np.testing.assert_allclose(np.asarray(half, "float32"), full, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_probabilities_out_of_range_raise(cls):
    y_pred = np.array([[0.5, -0.1, 0.6], [0.2, 0.3, 0.5]], "float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_pred must be probabilities in \[0, 1\]"):
        cls()(labels_for(cls, np.array([0, 2])), y_pred)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: losses.CategoricalPolyCrossentropy(epsilon=-1.5), "epsilon must be a number >= -1"),
        (lambda: losses.BinaryPolyCrossentropy(epsilon=float("nan")), "epsilon must be a number >= -1"),
        (lambda: losses.categorical_poly_crossentropy(onehot([0]), PROBS[:1], epsilon=-2), "epsilon must be"),
        (lambda: losses.binary_poly_crossentropy(BINARY_Y, BINARY_PROBS, epsilon=-2), "epsilon must be"),
        (lambda: losses.SparseCategoricalFocalCrossentropy(gamma=-0.5), "gamma must be a number >= 0 or 'flsd53'"),
        (lambda: losses.SparseCategoricalFocalCrossentropy(gamma="FLSD-53"), "gamma must be a number >= 0"),
        (lambda: losses.sparse_categorical_focal_crossentropy(LABELS, PROBS, gamma=-1), "gamma must be"),
        (lambda: losses.MMCECrossentropy(kernel_width=0.0), "kernel_width must be a number > 0"),
        (lambda: losses.mmce(onehot([0]), PROBS[:1], kernel_width=-1), "kernel_width must be a number > 0"),
        (lambda: losses.MMCECrossentropy(weight=-0.1), "weight must be a number >= 0"),
        (lambda: losses.mmce_crossentropy(onehot(LABELS), PROBS, weight=-1), "weight must be a number >= 0"),
        (lambda: losses.ConfidencePenaltyCrossentropy(beta=-0.1), "beta must be a number >= 0"),
        (lambda: losses.confidence_penalty_crossentropy(onehot([0]), PROBS[:1], beta=float("nan")), "beta must be"),
        (lambda: losses.MbLSCrossentropy(margin=-1.0), "margin must be a number >= 0"),
        (lambda: losses.MbLSCrossentropy(weight=-0.1), "weight must be a number >= 0"),
        (lambda: losses.mbls_crossentropy(onehot(LABELS), PROBS, margin=float("nan")), "margin must be"),
        (lambda: losses.MDCACrossentropy(beta=-1.0), "beta must be a number >= 0"),
        (lambda: losses.mdca_crossentropy(onehot(LABELS), PROBS, beta=-1), "beta must be a number >= 0"),
        (lambda: losses.CategoricalBrier(label_smoothing=1.5), r"label_smoothing must be in \[0, 1\]"),
        (lambda: losses.LogitNormCrossentropy(tau=0.0), "tau must be a number > 0"),
        (lambda: losses.logitnorm_crossentropy(onehot([0]), PROBS[:1], tau=-1), "tau must be a number > 0"),
        (lambda: losses.DualFocalCrossentropy(gamma=-1.0), "gamma must be a number >= 0"),
        (lambda: losses.dual_focal_crossentropy(onehot([0]), PROBS[:1], gamma="flsd53"), "gamma must be a number"),
        (lambda: losses.AdaFocalCrossentropy(n_bins=0), "n_bins must be an integer >= 1"),
        (lambda: losses.AdaFocalCrossentropy(lam=-1.0), "lam must be a number >= 0"),
        (lambda: losses.AdaFocalCrossentropy(gamma_min=-0.1), "gamma_min <= -switch <= switch <= gamma_max"),
        (lambda: losses.CategoricalBrier()(onehot([0, 1], 2), PROBS[:2]), "y_true and y_pred must have the same"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


CONFIGURED = [
    losses.SparseCategoricalFocalCrossentropy(alpha=ALPHA, gamma="flsd53", ignore_class=255, label_smoothing=0.1),
    losses.SparseCategoricalFocalCrossentropy(alpha=0.5, gamma=1.5, from_logits=True, reduction="sum"),
    losses.CategoricalPolyCrossentropy(epsilon=2.0, from_logits=True, label_smoothing=0.1, name="poly"),
    losses.BinaryPolyCrossentropy(epsilon=-1.0, label_smoothing=0.05, reduction="mean"),
    losses.CategoricalBrier(from_logits=True, label_smoothing=0.1),
    losses.CategoricalBrier(dtype="float16"),
    losses.MMCECrossentropy(weight=4.0, kernel_width=0.2, weighted=True, from_logits=True),
    losses.MMCECrossentropy(label_smoothing=0.1),
    losses.ConfidencePenaltyCrossentropy(beta=0.3, from_logits=True, label_smoothing=0.1),
    losses.MbLSCrossentropy(margin=5.0, weight=0.2, reduction="sum", name="mbls"),
    losses.MDCACrossentropy(beta=5.0, from_logits=True, label_smoothing=0.05),
    losses.LogitNormCrossentropy(tau=0.04, from_logits=True, label_smoothing=0.1),
    losses.LogitNormCrossentropy(reduction="sum"),
    losses.DualFocalCrossentropy(gamma=2.6, from_logits=True, label_smoothing=0.1),
    losses.DualFocalCrossentropy(dtype="float16"),
    losses.AdaFocalCrossentropy(n_bins=10, gamma_initial=2.0, lam=0.5, switch=0.1, gamma_min=-3.0, from_logits=True),
    losses.AdaFocalCrossentropy(label_smoothing=0.05, reduction="mean"),
]


@pytest.mark.parametrize("loss", CONFIGURED, ids=lambda loss: type(loss).__name__)
def test_config_round_trip(loss):
    config = loss.get_config()
    restored = type(loss).from_config(config)
    assert restored.get_config() == config and restored.dtype == loss.dtype
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss) and clone.get_config() == config


@pytest.mark.parametrize(
    "loss", [loss for loss in CONFIGURED if loss.dtype == "float32"], ids=lambda loss: type(loss).__name__
)
def test_saved_model_restores_loss(loss, tmp_path):
    binary = isinstance(loss, losses.BinaryPolyCrossentropy)
    activation = None if loss.from_logits else ("sigmoid" if binary else "softmax")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1 if binary else 3, activation=activation)(inputs))
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "model.keras")

    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()
    rng = np.random.default_rng(10)
    x = rng.normal(size=(8, 4)).astype("float32")
    labels = rng.integers(0, 2 if binary else 3, 8)
    y = labels[:, None].astype("float32") if binary else labels_for(type(loss), labels)
    # One batch of 8, so the MMCE term of the compiled test step is that of the eager call (test_on_batch: the step
    # `evaluate` runs, without building a tf.data pipeline for one batch).
    assert loaded.test_on_batch(x, y) == pytest.approx(float(loss(y, model(x))), rel=1e-6)
