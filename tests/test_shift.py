"""The shifted test sets of `evaluation.shift`: each transform on tiny literal arrays, identity levels, seeded
determinism and the rates the text corruptions realise."""

from __future__ import annotations

import numpy as np
import pytest

from xent_lab.data import shift as S

# A 3x3 image, batch and channel axes as the data has them.
TINY = (np.arange(9, dtype=np.float32) / 10).reshape(1, 3, 3, 1)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_rotation_by_90_degrees_is_np_rot90_and_by_0_the_image():
    np.testing.assert_array_equal(S.rotate(TINY, 90)[0, :, :, 0], np.rot90(TINY[0, :, :, 0]))
    expected = np.array([[0.2, 0.5, 0.8], [0.1, 0.4, 0.7], [0.0, 0.3, 0.6]], np.float32)  # counterclockwise
    np.testing.assert_array_equal(S.rotate(TINY, 90)[0, :, :, 0], expected)
    np.testing.assert_array_equal(S.rotate(TINY, 180)[0, :, :, 0], np.rot90(TINY[0, :, :, 0], 2))
    np.testing.assert_array_equal(S.rotate(TINY, 0), TINY)


def test_rotation_by_45_degrees_keeps_the_centre_and_zeroes_what_leaves_the_image():
    image = np.zeros((1, 5, 5, 1), np.float32)
    image[0, 2, :, 0] = 1.0  # a horizontal bar through the centre
    out = S.rotate(image, 45)[0, :, :, 0]
    assert out[2, 2] == 1.0
    np.testing.assert_allclose(np.diag(out[::-1]), [0.0, 1.0, 1.0, 1.0, 0.0], atol=1e-6)  # now on the diagonal
    assert out[2, 0] == 0.0 and out[2, 4] == 0.0
    assert out.dtype == np.float32 and out.shape == (5, 5)


@pytest.mark.parametrize("corruption", [S.gaussian_noise, S.gaussian_blur, S.contrast])
def test_severity_0_leaves_the_images_unchanged(corruption):
    np.testing.assert_array_equal(corruption(TINY, 0, rng()), TINY)


def test_gaussian_noise_adds_imagenet_c_sigma_and_clips():
    flat = np.full((50, 28, 28, 1), 0.5, np.float32)
    for severity, sigma in zip(range(1, 6), (0.08, 0.12, 0.18, 0.26, 0.38), strict=True):
        noisy = S.gaussian_noise(flat, severity, rng())
        assert noisy.dtype == np.float32 and noisy.shape == flat.shape
        expected = np.clip(0.5 + rng().standard_normal(flat.shape, dtype=np.float32) * np.float32(sigma), 0, 1)
        np.testing.assert_allclose(noisy, expected, rtol=1e-6)
    # At severity 1, 0.5 is 6 sigma from either clip: the standard deviation is sigma.
    assert np.std(S.gaussian_noise(flat, 1, rng())) == pytest.approx(0.08, rel=0.01)
    assert S.gaussian_noise(flat, 5, rng()).min() == 0 and S.gaussian_noise(flat, 5, rng()).max() == 1


def test_gaussian_blur_spreads_a_point_as_a_normalised_gaussian_of_cifar_c_sigma():
    point = np.zeros((1, 9, 9, 1), np.float32)
    point[0, 4, 4, 0] = 1.0
    blurred = S.gaussian_blur(point, 5, rng())[0, :, :, 0]  # sigma 1 pixel
    assert blurred.sum() == pytest.approx(1.0, rel=1e-5)
    # The 1-D kernel at 0 and 1 pixel: exp(0) and exp(-1/2), normalised over 4 sigma (9 taps).
    taps = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    taps /= taps.sum()
    assert blurred[4, 4] == pytest.approx(taps[4] ** 2, rel=1e-5)
    assert blurred[4, 5] == pytest.approx(taps[4] * taps[5], rel=1e-5)


def test_contrast_pulls_each_pixel_towards_its_image_mean():
    # TINY's mean is 0.4: severity 1 (c = 0.4) maps x to 0.4 + 0.4 (x - 0.4).
    out = S.contrast(TINY, 1, rng())
    np.testing.assert_allclose(out, 0.4 + 0.4 * (TINY - 0.4), rtol=1e-6)
    np.testing.assert_allclose(S.contrast(TINY, 5, rng()).mean(), 0.4, rtol=1e-6)


IDS = np.array([[5, 6, 7, 8, 0, 0], [9, 10, 0, 0, 0, 0]], np.int32)


def test_text_corruptions_at_rate_0_are_the_identity_and_at_rate_1_leave_no_word():
    np.testing.assert_array_equal(S.word_dropout(IDS, 0.0, rng()), IDS)
    np.testing.assert_array_equal(S.oov(IDS, 0.0, rng()), IDS)
    np.testing.assert_array_equal(S.word_dropout(IDS, 1.0, rng()), np.zeros_like(IDS))
    np.testing.assert_array_equal(S.oov(IDS, 1.0, rng()), [[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])


def test_word_dropout_keeps_the_other_words_in_order_padded_at_the_end():
    # rng(0).random((2, 6)) < 0.5 draws a drop for words 2-4 of the first review and none in the second.
    drop = rng(0).random(IDS.shape) < 0.5
    np.testing.assert_array_equal(drop[:, :4], [[False, True, True, True], [False, False, False, False]])
    np.testing.assert_array_equal(S.word_dropout(IDS, 0.5, rng(0)), [[5, 0, 0, 0, 0, 0], [9, 10, 0, 0, 0, 0]])
    np.testing.assert_array_equal(S.oov(IDS, 0.5, rng(0)), [[5, 1, 1, 1, 0, 0], [9, 10, 0, 0, 0, 0]])


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_the_text_corruptions_realise_their_rate_and_leave_the_padding(rate):
    ids = np.random.default_rng(1).integers(2, 1000, size=(500, 200)).astype(np.int32)
    ids[:, 150:] = 0  # 150 words, then padding
    dropped = S.word_dropout(ids, rate, rng())
    assert dropped.dtype == np.int32 and dropped.shape == ids.shape
    assert 1 - (dropped != 0).sum() / (ids != 0).sum() == pytest.approx(rate, abs=0.005)
    assert not ((dropped == 0)[:, :-1] & (dropped != 0)[:, 1:]).any()  # no word after padding
    replaced = S.oov(ids, rate, rng())
    assert (replaced == 1).sum() / (ids != 0).sum() == pytest.approx(rate, abs=0.005)
    assert ((replaced == 0) == (ids == 0)).all()


def test_shifted_sets_are_seeded_per_shift_and_level_and_follow_the_plan():
    images = np.random.default_rng(2).random((4, 28, 28, 1)).astype(np.float32)
    plan = {"rotate": [0, 90], "gaussian_noise": [2]}
    sets = list(S.shifted_sets(images, plan, seed=7))
    assert [(name, level) for name, level, _ in sets] == [("rotate", 0), ("rotate", 90), ("gaussian_noise", 2)]
    np.testing.assert_array_equal(sets[0][2], images)
    again = dict(((n, lv), x) for n, lv, x in S.shifted_sets(images, {"gaussian_noise": [2]}, seed=7))
    np.testing.assert_array_equal(again["gaussian_noise", 2], sets[2][2])  # the same set whatever else is listed
    other = next(S.shifted_sets(images, {"gaussian_noise": [2]}, seed=8))[2]
    assert not np.array_equal(other, sets[2][2])


@pytest.mark.parametrize(
    "name,levels,kind,expected",
    [
        ("rotate", [0, 45.5, -90], "image", None),
        ("oov", [0, 0.5, 1], "text", None),
        ("shear", [1], "image", "a shift of image data: one of rotate, gaussian_noise, gaussian_blur, contrast"),
        ("rotate", [90], "text", "a shift of text data: one of word_dropout, oov"),
        ("gaussian_blur", [6], "image", "a list of levels, each a severity from 0 to 5"),
        ("contrast", [1.5], "image", "a list of levels, each a severity from 0 to 5"),
        ("word_dropout", [1.2], "text", "a list of levels, each a rate in [0, 1]"),
        ("rotate", 45, "image", "a list of levels, each an angle in degrees"),
        ("rotate", [45, 45], "image", "a list of distinct levels"),
    ],
)
def test_level_error_names_what_a_shift_takes(name, levels, kind, expected):
    assert S.level_error(name, levels, kind) == expected
