"""Validation of the composed Hydra config, before any data is loaded or any run is created.

Hydra already rejects unknown config groups and options; this module checks the values, so that
`trainer.epochs=-1` fails in a second with a message naming the key instead of deep inside Keras.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from xent_lab.calibration.recalibration import ALL_METHODS, RECALIBRATORS
from xent_lab.data import FACTS, DatasetFacts
from xent_lab.errors import ConfigError, NotApplicable

LOSSES = ("bce", "cce", "sparse_cce", "focal", "sparse_focal", "poly1", "brier", "mmce")
IMPLS = ("custom", "builtin", "naive")
# The losses Keras has (impl=builtin) and that have a textbook form (impl=naive); the others are ours only.
STANDARD_LOSSES = ("bce", "cce", "sparse_cce", "focal")
FOCAL_LOSSES = ("focal", "sparse_focal")
DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
ADAPTIVE_GAMMAS = ("flsd53",)
ON_NONFINITE = ("fail", "record")  # trainer.on_nonfinite
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
# Mappings whose keys are not fixed by conf/: the optimizer's keyword arguments (`+trainer.optimizer.momentum=0.9`).
OPEN_KEYS = ("trainer.optimizer.",)


def _fail(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"invalid config value {key}={value!r}: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(cfg: Any, key: str, *, allow_none: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if not _is_int(value) or value < 1:
        _fail(key, value, "a positive integer" + (" or null" if allow_none else ""))


def _choice(cfg: Any, key: str, choices: tuple[str, ...]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        _fail(key, value, "one of " + ", ".join(choices))
    return value


def _boolean(cfg: Any, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        _fail(key, value, "true or false")


def _validate_dataset(cfg: DictConfig) -> DatasetFacts:
    name = _choice(cfg, "dataset.name", tuple(FACTS))
    _positive_int(cfg, "dataset.val_size")
    if not _is_int(cfg.dataset.val_seed):
        _fail("dataset.val_seed", cfg.dataset.val_seed, "an integer")
    _positive_int(cfg, "dataset.limit.train", allow_none=True)
    _positive_int(cfg, "dataset.limit.test", allow_none=True)
    imbalance = OmegaConf.select(cfg, "dataset.imbalance")
    if imbalance is not None and (not _is_number(imbalance) or imbalance < 1):
        _fail("dataset.imbalance", imbalance, "null or a ratio >= 1 between the largest and the smallest class")
    _boolean(cfg, "dataset.download")
    _boolean(cfg, "dataset.verify_checksums")
    if name == "imdb":
        _positive_int(cfg, "dataset.vocab_size")
        _positive_int(cfg, "dataset.sequence_length")
    return FACTS[name]


def _validate_model(cfg: DictConfig, dataset: DatasetFacts) -> None:
    if cfg.model.input != dataset.input_kind:
        _fail(
            "model.input",
            cfg.model.input,
            f"'{dataset.input_kind}' for dataset={cfg.dataset.name}: model={cfg.model.name} takes "
            f"{cfg.model.input} input; pick a {dataset.input_kind} model (see conf/model/)",
        )
    dropout = OmegaConf.select(cfg, "model.dropout")
    if dropout is not None and (not _is_number(dropout) or not 0 <= dropout < 1):
        _fail("model.dropout", dropout, "a number in [0, 1)")


def _validate_loss(cfg: DictConfig, num_classes: int) -> None:
    name = _choice(cfg, "loss.name", LOSSES)
    impl = _choice(cfg, "loss.impl", IMPLS)
    _boolean(cfg, "loss.from_logits")
    smoothing = cfg.loss.label_smoothing
    if not _is_number(smoothing) or not 0 <= smoothing <= 1:
        _fail("loss.label_smoothing", smoothing, "a number in [0, 1]")
    class_weight = OmegaConf.select(cfg, "loss.class_weight")
    if class_weight not in (None, "balanced"):
        _fail("loss.class_weight", class_weight, "null or 'balanced'")
    epsilon = cfg.loss.epsilon
    if not _is_number(epsilon) or not 0 < epsilon < 1:
        _fail("loss.epsilon", epsilon, "a number in (0, 1)")
    if impl != "custom" and name not in STANDARD_LOSSES:
        raise NotApplicable(
            f"invalid config value loss.impl={impl!r}: expected 'custom' with loss={name} "
            f"(only {', '.join(STANDARD_LOSSES)} have a Keras built-in and a naive form)"
        )
    _check_epsilon_applies(impl, epsilon)
    if name == "sparse_cce" and impl == "builtin" and smoothing > 0:
        raise NotApplicable(
            f"invalid config value loss.label_smoothing={smoothing!r}: expected 0 with loss=sparse_cce "
            "loss.impl=builtin (Keras' SparseCategoricalCrossentropy has no label smoothing); "
            "use loss.impl=custom or loss=cce"
        )
    if name in FOCAL_LOSSES:
        _validate_focal(cfg, num_classes)
    elif name == "poly1":
        poly_epsilon = cfg.loss.poly_epsilon
        if not _is_number(poly_epsilon) or poly_epsilon < -1:
            _fail("loss.poly_epsilon", poly_epsilon, "a number >= -1 (below, the loss can be negative)")
    elif name == "mmce":
        weight, width = cfg.loss.mmce_weight, cfg.loss.mmce_kernel_width
        if not _is_number(weight) or weight < 0:
            _fail("loss.mmce_weight", weight, "a number >= 0")
        if not _is_number(width) or width <= 0:
            _fail("loss.mmce_kernel_width", width, "a number > 0")
        _boolean(cfg, "loss.mmce_weighted")


def _check_epsilon_applies(impl: str, epsilon: float) -> None:
    """`loss.epsilon` is the epsilon of impl=naive's log(p + epsilon): another value with another impl is not
    applicable (a sweep over both skips those jobs), never silently ignored."""
    # Here, not at the top: the config check runs before TensorFlow is needed, and naive.py imports Keras.
    from xent_lab.losses.naive import EPSILON

    if impl != "naive" and epsilon != EPSILON:
        raise NotApplicable(
            f"invalid config value loss.epsilon={epsilon!r}: expected {EPSILON} (the default) with loss.impl={impl!r}; "
            "loss.epsilon is the epsilon of impl=naive's log(p + epsilon) only (the other impls clip at Keras' own)"
        )


def _validate_focal(cfg: DictConfig, num_classes: int) -> None:
    """gamma and alpha of loss=focal (binary on a binary task, else categorical) and loss=sparse_focal."""
    binary = cfg.loss.name == "focal" and num_classes == 2
    gamma = cfg.loss.gamma
    if gamma in ADAPTIVE_GAMMAS:
        if cfg.loss.impl == "builtin":
            raise NotApplicable(
                f"invalid config value loss.gamma={gamma!r}: Keras' built-in focal loss takes a number; "
                "the adaptive FLSD-53 gamma needs loss.impl=custom (or naive)"
            )
    elif not _is_number(gamma) or gamma < 0:
        _fail("loss.gamma", gamma, "a number >= 0 or 'flsd53'")
    if cfg.loss.name == "sparse_focal":
        ignore_class = cfg.loss.ignore_class
        if ignore_class is not None and not _is_int(ignore_class):
            _fail("loss.ignore_class", ignore_class, "null or an integer label")
    else:
        _boolean(cfg, "loss.apply_class_balancing")
    alpha = cfg.loss.alpha
    if isinstance(alpha, ListConfig):
        if binary:
            _fail("loss.alpha", list(alpha), "a scalar for a binary task (binary focal takes one alpha)")
        if len(alpha) != num_classes or not all(_is_number(a) and a >= 0 for a in alpha):
            _fail("loss.alpha", list(alpha), f"a list of {num_classes} numbers >= 0, one per class")
    elif not _is_number(alpha) or alpha < 0:
        _fail("loss.alpha", alpha, "a number >= 0 or a list with one weight per class")
    elif binary and cfg.loss.apply_class_balancing and alpha > 1:
        _fail("loss.alpha", alpha, "a number in [0, 1] with apply_class_balancing=true")


def _validate_trainer(cfg: DictConfig) -> None:
    _positive_int(cfg, "trainer.epochs")
    _positive_int(cfg, "trainer.batch_size")
    _choice(cfg, "trainer.device", DEVICES)
    _choice(cfg, "trainer.precision", PRECISIONS)
    _boolean(cfg, "trainer.deterministic")
    _boolean(cfg, "trainer.checkpoint")
    if "_target_" not in cfg.trainer.optimizer:
        _fail("trainer.optimizer", OmegaConf.to_container(cfg.trainer.optimizer), "a mapping with a _target_")
    lr = OmegaConf.select(cfg, "trainer.optimizer.learning_rate")
    if lr is not None and (not _is_number(lr) or lr <= 0):
        _fail("trainer.optimizer.learning_rate", lr, "a number > 0")
    _boolean(cfg, "trainer.early_stopping.enabled")
    patience = cfg.trainer.early_stopping.patience
    if not _is_int(patience) or patience < 0:
        _fail("trainer.early_stopping.patience", patience, "an integer >= 0")
    _choice(cfg, "trainer.on_nonfinite", ON_NONFINITE)
    probe = cfg.trainer.gradient_probe
    if not _is_int(probe) or probe < 0:
        _fail("trainer.gradient_probe", probe, "a number of training samples >= 0 (0: off)")
    keep = _choice(cfg, "trainer.keep", ("last", "best_val_accuracy"))
    stop = cfg.trainer.early_stopping
    if keep != "last" and stop.enabled and stop.restore_best_weights:
        raise ConfigError(
            f"trainer.keep={keep} and trainer.early_stopping.restore_best_weights=true both choose the "
            "weights to keep: set trainer.early_stopping.restore_best_weights=false, or trainer.keep=last"
        )
    if not _is_int(cfg.seed):
        _fail("seed", cfg.seed, "an integer")


def _validate_tracking(cfg: DictConfig) -> None:
    if not isinstance(cfg.tracking.experiment, str) or not cfg.tracking.experiment:
        _fail("tracking.experiment", cfg.tracking.experiment, "a non-empty string")
    _boolean(cfg, "tracking.log_model")
    register_as = cfg.tracking.register_as
    if register_as is not None and (not isinstance(register_as, str) or not register_as.strip()):
        _fail("tracking.register_as", register_as, "null or a registered model name")
    _boolean(cfg, "tracking.system_metrics")
    if cfg.tracking.system_metrics and importlib.util.find_spec("psutil") is None:
        raise ConfigError(
            "tracking.system_metrics=true needs psutil (MLflow samples the machine with it): pip install psutil"
        )
    timeout = cfg.tracking.connect_timeout
    if not _is_number(timeout) or timeout <= 0:
        _fail("tracking.connect_timeout", timeout, "a number of seconds > 0")
    lock_timeout = OmegaConf.select(cfg, "tracking.lock_timeout_s")
    if not _is_number(lock_timeout) or lock_timeout <= 0:
        _fail("tracking.lock_timeout_s", lock_timeout, "a number of seconds > 0")
    _positive_int(cfg, "calibration.n_bins")
    _boolean(cfg, "calibration.per_epoch")
    _boolean(cfg, "calibration.temperature_scaling")
    _validate_calibration(cfg)


def _validate_calibration(cfg: DictConfig) -> None:
    resamples = cfg.calibration.bootstrap
    if not _is_int(resamples) or resamples < 0:
        _fail("calibration.bootstrap", resamples, "a number of bootstrap resamples >= 0 (0: no intervals)")
    if not _is_int(cfg.calibration.bootstrap_seed):
        _fail("calibration.bootstrap_seed", cfg.calibration.bootstrap_seed, "an integer")
    methods = cfg.calibration.methods
    if methods != ALL_METHODS and (
        not isinstance(methods, ListConfig)
        or any(m not in RECALIBRATORS for m in methods)
        or len(set(methods)) != len(methods)
    ):
        _fail(
            "calibration.methods",
            methods,
            f"'{ALL_METHODS}' or a list of distinct methods among " + ", ".join(RECALIBRATORS),
        )
    _choice(cfg, "calibration.temperature_objective", ("nll", "ece"))


def _validate_study(cfg: DictConfig) -> None:
    name = OmegaConf.select(cfg, "study.name")
    # The name becomes a folder (multirun/NAME, experiments/NAME) and an experiment: nothing that leaves them.
    if name is not None and (not isinstance(name, str) or not STUDY_NAME.fullmatch(name)):
        _fail("study.name", name, "null or up to 64 ASCII letters, digits, '_' and '-', not starting with '-'")
    _boolean(cfg, "study.skip_finished")
    _boolean(cfg, "study.report")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first invalid key of `cfg`; resolving interpolations may raise too."""
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:  # OmegaConf raises several types; all mean the same to the user
        raise ConfigError(f"cannot resolve the config: {exc}") from exc
    dataset = _validate_dataset(cfg)
    _validate_model(cfg, dataset)
    _validate_loss(cfg, dataset.num_classes)
    _validate_trainer(cfg)
    _validate_tracking(cfg)
    _validate_study(cfg)


def check_added_keys(cfg: DictConfig, overrides: Collection[str], groups: Collection[str]) -> None:
    """Reject `+KEY=VALUE` overrides that add a key conf/ does not define, e.g. `+trainer.epoch=3`.

    Hydra refuses `+` for a key that exists, so every such key is new, and a new key is read by nothing:
    a typo that would be accepted silently. Exceptions: config groups (`+experiment=NAME`), the open
    mappings in OPEN_KEYS, and `++KEY=VALUE`, the explicit way to add a key anyway.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if override.type != OverrideType.ADD or key in groups or key.startswith(OPEN_KEYS):
            continue
        known = [k for k in flatten(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])) if k != key]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "see `python -m xent_lab.train --cfg job` for the keys"
        raise ConfigError(
            f"unknown config key {key} (added by +{override.input_line.lstrip('+')}): {hint} "
            "(`++KEY=VALUE` adds a key on purpose)"
        )


def flatten(cfg: DictConfig | Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as dotted keys -> string values, the form MLflow params take."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, str] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = str(value)
    return flat
