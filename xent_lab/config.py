"""Validation of the composed Hydra config, before any data is loaded or any run is created.

Hydra already rejects unknown config groups and options; this module checks the values, so that
`trainer.epochs=-1` fails in a second with a message naming the key instead of deep inside Keras.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Collection, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from xent_lab.calibration.recalibration import ALL_METHODS, RECALIBRATORS
from xent_lab.data import FACTS, DatasetFacts
from xent_lab.errors import ConfigError, invalid_value
from xent_lab.losses._checks import is_int, is_number

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
ON_NONFINITE = ("fail", "record")  # trainer.on_nonfinite
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
# Mappings whose keys are not fixed by conf/: the optimizer's keyword arguments (`+trainer.optimizer.momentum=0.9`).
OPEN_KEYS = ("trainer.optimizer.",)


def _fail(key: str, value: Any, expected: str) -> None:
    raise invalid_value(key, value, expected)


def _positive_int(cfg: Any, key: str, *, allow_none: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if not is_int(value) or value < 1:
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
    if not is_int(cfg.dataset.val_seed):
        _fail("dataset.val_seed", cfg.dataset.val_seed, "an integer")
    _positive_int(cfg, "dataset.limit.train", allow_none=True)
    _positive_int(cfg, "dataset.limit.test", allow_none=True)
    imbalance = OmegaConf.select(cfg, "dataset.imbalance")
    if imbalance is not None and (not is_number(imbalance) or imbalance < 1):
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
    if dropout is not None and (not is_number(dropout) or not 0 <= dropout < 1):
        _fail("model.dropout", dropout, "a number in [0, 1)")


def _validate_loss(cfg: DictConfig, num_classes: int) -> None:
    """The loss group, by its registry entry (xent_lab/losses/registry.py): keys, values and combinations."""
    # Here, not at the top: the config check runs before TensorFlow is needed, and the registry holds the
    # loss classes.
    from xent_lab.losses import registry

    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    registry.validate(loss, num_classes)


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
    if lr is not None and (not is_number(lr) or lr <= 0):
        _fail("trainer.optimizer.learning_rate", lr, "a number > 0")
    _boolean(cfg, "trainer.early_stopping.enabled")
    patience = cfg.trainer.early_stopping.patience
    if not is_int(patience) or patience < 0:
        _fail("trainer.early_stopping.patience", patience, "an integer >= 0")
    _choice(cfg, "trainer.on_nonfinite", ON_NONFINITE)
    probe = cfg.trainer.gradient_probe
    if not is_int(probe) or probe < 0:
        _fail("trainer.gradient_probe", probe, "a number of training samples >= 0 (0: off)")
    keep = _choice(cfg, "trainer.keep", ("last", "best_val_accuracy"))
    stop = cfg.trainer.early_stopping
    if keep != "last" and stop.enabled and stop.restore_best_weights:
        raise ConfigError(
            f"trainer.keep={keep} and trainer.early_stopping.restore_best_weights=true both choose the "
            "weights to keep: set trainer.early_stopping.restore_best_weights=false, or trainer.keep=last"
        )
    if not is_int(cfg.seed):
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
    if not is_number(timeout) or timeout <= 0:
        _fail("tracking.connect_timeout", timeout, "a number of seconds > 0")
    lock_timeout = OmegaConf.select(cfg, "tracking.lock_timeout_s")
    if not is_number(lock_timeout) or lock_timeout <= 0:
        _fail("tracking.lock_timeout_s", lock_timeout, "a number of seconds > 0")
    _positive_int(cfg, "calibration.n_bins")
    _boolean(cfg, "calibration.per_epoch")
    _boolean(cfg, "calibration.temperature_scaling")
    _validate_calibration(cfg)


def _validate_calibration(cfg: DictConfig) -> None:
    resamples = cfg.calibration.bootstrap
    if not is_int(resamples) or resamples < 0:
        _fail("calibration.bootstrap", resamples, "a number of bootstrap resamples >= 0 (0: no intervals)")
    if not is_int(cfg.calibration.bootstrap_seed):
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
