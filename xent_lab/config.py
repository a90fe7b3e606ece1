"""Validation of the composed Hydra config, before any data is loaded or any run is created.

Hydra already rejects unknown config groups and options; this module checks the values, so that
`trainer.epochs=-1` fails in a second with a message naming the key instead of deep inside Keras.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from xent_lab.calibration.recalibration import ALL_METHODS, MIN_FIT_SAMPLES, RECALIBRATORS
from xent_lab.data import FACTS, DatasetFacts
from xent_lab.data.shift import SHIFTS, level_error
from xent_lab.errors import ConfigError, invalid_value
from xent_lab.losses._checks import is_int, is_number
from xent_lab.questions import KEY as QUESTIONS_KEY
from xent_lab.questions import parse_questions

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
ON_NONFINITE = ("fail", "record")  # trainer.on_nonfinite
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
# Mappings whose keys are not fixed by conf/: the optimizer's keyword arguments (`+trainer.optimizer.momentum=0.9`).
OPEN_KEYS = ("trainer.optimizer.",)
# The only `_target_` a config may set is trainer.optimizer's, and only to one of Keras' own optimizers (the README
# lists them): anything Hydra can import would run otherwise, e.g. numpy.load(allow_pickle=True) on a downloaded file.
OPTIMIZER_KEY = "trainer.optimizer"
OPTIMIZERS = {
    f"keras.optimizers.{name}": name
    for name in (
        "Adadelta",
        "Adafactor",
        "Adagrad",
        "Adam",
        "AdamW",
        "Adamax",
        "Ftrl",
        "Lamb",
        "Lion",
        "Nadam",
        "RMSprop",
        "SGD",
    )
}
SEED_MAX = 2**32 - 1  # keras.utils.set_random_seed seeds NumPy, which takes 0 to 2**32 - 1
RUN_NAME_MAX = 250  # MLflow's column for a run's name
MODEL_NAME_MAX = 256  # MLflow's column for a registered model's name
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    if not is_int(cfg.dataset.val_seed) or cfg.dataset.val_seed < 0:
        _fail("dataset.val_seed", cfg.dataset.val_seed, "an integer >= 0 (NumPy's default_rng seed)")
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
    _validate_optimizer(cfg)
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
    if not is_int(cfg.seed) or not 0 <= cfg.seed <= SEED_MAX:
        _fail("seed", cfg.seed, f"an integer from 0 to {SEED_MAX} (Keras seeds NumPy with it)")


def optimizer_class(target: Any) -> str:
    """The name in keras.optimizers of `trainer.optimizer._target_`, which must be in OPTIMIZERS."""
    if target not in OPTIMIZERS:
        _fail(f"{OPTIMIZER_KEY}._target_", target, "one of Keras' optimizers: " + ", ".join(OPTIMIZERS))
    return OPTIMIZERS[target]


def _validate_optimizer(cfg: DictConfig) -> None:
    """A Keras optimizer class and its keyword arguments: plain values, each a parameter the class takes."""
    import inspect

    import keras  # already imported by the loss registry; the class's own parameters are the keys it takes

    spec = cfg.trainer.optimizer
    if not isinstance(spec, DictConfig) or "_target_" not in spec:
        _fail(
            OPTIMIZER_KEY,
            OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else spec,
            "a mapping with a _target_",
        )
    name = optimizer_class(spec._target_)
    taken = [p for p in inspect.signature(getattr(keras.optimizers, name)).parameters if p != "kwargs"]
    for key, value in spec.items():
        if key == "_target_":
            continue
        if key not in taken:
            _fail(f"{OPTIMIZER_KEY}.{key}", value, f"no such key: keras.optimizers.{name} takes " + ", ".join(taken))
        if value is not None and not isinstance(value, bool | int | float | str):
            _fail(f"{OPTIMIZER_KEY}.{key}", value, "a number, a string, true, false or null")
    lr = spec.get("learning_rate")
    if lr is not None and (not is_number(lr) or lr <= 0):
        _fail("trainer.optimizer.learning_rate", lr, "a number > 0")


def _check_targets(node: Any, path: str = "") -> None:
    """Refuse a `_target_` (or any other key Hydra's instantiate reads) anywhere but trainer.optimizer._target_."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{path}.{key}" if path else str(key)
            if str(key).startswith("_") and str(key).endswith("_") and dotted != f"{OPTIMIZER_KEY}._target_":
                _fail(dotted, value, f"no {key} here: a config instantiates nothing but {OPTIMIZER_KEY}")
            _check_targets(value, dotted)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_targets(value, f"{path}[{i}]")


def _validate_names(cfg: DictConfig) -> None:
    # MLflow's limits, imported here: `xent_lab.training` imports this module's constants and loads no MLflow.
    from mlflow.utils.validation import MAX_EXPERIMENT_NAME_LENGTH, path_not_unique

    # The experiment names its artifact folder (`tracking.store.artifact_location`): nothing MLflow refuses, nothing
    # that could not name a folder.
    name = cfg.tracking.experiment
    if (
        not isinstance(name, str)
        or not name.strip()
        or name.strip() in (".", "..")
        or _CONTROL.search(name)
        or len(name) > MAX_EXPERIMENT_NAME_LENGTH
    ):
        _fail(
            "tracking.experiment",
            name,
            f"a name of 1 to {MAX_EXPERIMENT_NAME_LENGTH} characters, not blank, '.' or '..', without control "
            "characters",
        )
    run_name = cfg.tracking.run_name
    if run_name is not None and (not isinstance(run_name, str) or not run_name.strip() or len(run_name) > RUN_NAME_MAX):
        _fail("tracking.run_name", run_name, f"null or a name of 1 to {RUN_NAME_MAX} characters")
    # MLflow's own rules for a registered model's name (mlflow.utils.validation._validate_model_name, private),
    # checked here so that a bad name fails before training, not when the trained model is registered.
    model = cfg.tracking.register_as
    if model is not None and (
        not isinstance(model, str)
        or not model.strip()
        or "/" in model
        or ":" in model
        or path_not_unique(model)
        or len(model) > MODEL_NAME_MAX
    ):
        _fail(
            "tracking.register_as",
            model,
            f"null or a registered model name of 1 to {MODEL_NAME_MAX} characters, without '/' or ':', not '.' or '..'",
        )


def _validate_tracking(cfg: DictConfig) -> None:
    _validate_names(cfg)
    _boolean(cfg, "tracking.log_model")
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
    _boolean(cfg, "calibration.per_epoch")
    _boolean(cfg, "calibration.temperature_scaling")


def _validate_calibration(cfg: DictConfig, dataset: DatasetFacts) -> None:
    _positive_int(cfg, "calibration.n_bins")
    resamples = cfg.calibration.bootstrap
    if not is_int(resamples) or resamples < 0:
        _fail("calibration.bootstrap", resamples, "a number of bootstrap resamples >= 0 (0: no intervals)")
    if not is_int(cfg.calibration.bootstrap_seed) or cfg.calibration.bootstrap_seed < 0:
        _fail("calibration.bootstrap_seed", cfg.calibration.bootstrap_seed, "an integer >= 0")
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
    if (cfg.calibration.temperature_scaling or len(methods) > 0) and cfg.dataset.val_size < MIN_FIT_SAMPLES:
        _fail(
            "dataset.val_size",
            cfg.dataset.val_size,
            f"at least {MIN_FIT_SAMPLES}: recalibration fits on the validation set (or set "
            "calibration.temperature_scaling=false calibration.methods=[])",
        )
    # More bins than test samples only adds empty bins, and the bootstrap's arrays grow with the bins: 10 million
    # took 492 GiB after training.
    limit_test = cfg.dataset.limit.test
    test_samples = dataset.test_size if limit_test is None else min(limit_test, dataset.test_size)
    if cfg.calibration.n_bins > test_samples:
        _fail("calibration.n_bins", cfg.calibration.n_bins, f"at most {test_samples}, the test samples")


def _validate_evaluation(cfg: DictConfig) -> None:
    """evaluation.shift: a seed, resamples, and for each input kind {shift: [levels]} of shifts of that kind."""
    for key in ("seed", "bootstrap"):
        value = OmegaConf.select(cfg, f"evaluation.shift.{key}")
        if not is_int(value) or value < 0:
            _fail(f"evaluation.shift.{key}", value, "an integer >= 0")
    for kind in sorted({shift.input_kind for shift in SHIFTS.values()}):
        plan = OmegaConf.select(cfg, f"evaluation.shift.{kind}")
        if not isinstance(plan, DictConfig):
            _fail(f"evaluation.shift.{kind}", plan, "a mapping {shift: [levels]}")
        for name, levels in OmegaConf.to_container(plan).items():
            if (expected := level_error(name, levels, kind)) is not None:
                _fail(f"evaluation.shift.{kind}.{name}", levels, expected)


def _validate_study(cfg: DictConfig) -> None:
    name = OmegaConf.select(cfg, "study.name")
    # The name becomes a folder (multirun/NAME, experiments/NAME) and an experiment: nothing that leaves them.
    if name is not None and (not isinstance(name, str) or not STUDY_NAME.fullmatch(name)):
        _fail("study.name", name, "null or up to 64 ASCII letters, digits, '_' and '-', not starting with '-'")
    _boolean(cfg, "study.skip_finished")
    _boolean(cfg, "study.reuse_across_commits")
    _boolean(cfg, "study.report")
    metric = OmegaConf.select(cfg, "study.optimized_metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        _fail("study.optimized_metric", metric, "null or a final metric's name, e.g. val/kept_nll")
    questions = OmegaConf.select(cfg, QUESTIONS_KEY)
    try:
        parse_questions(OmegaConf.to_container(questions) if OmegaConf.is_config(questions) else questions)
    except ValueError as exc:
        raise ConfigError(f"invalid config value {exc}") from None


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first invalid key of `cfg`; resolving interpolations may raise too."""
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:  # OmegaConf raises several types; all mean the same to the user
        raise ConfigError(f"cannot resolve the config: {exc}") from exc
    _check_targets({key: value for key, value in OmegaConf.to_container(cfg).items() if key != "hydra"})
    dataset = _validate_dataset(cfg)
    _validate_model(cfg, dataset)
    _validate_loss(cfg, dataset.num_classes)
    _validate_trainer(cfg)
    _validate_tracking(cfg)
    _validate_calibration(cfg, dataset)
    _validate_evaluation(cfg)
    _validate_study(cfg)


def check_output_dir(path: Path, key: str) -> None:
    """Refuse an output folder that cannot be made or written (a read-only disk, no permission), before Hydra
    tries to and fails with a traceback."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={path} cannot be made: {existing} is not a folder; set {key} to a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={path} cannot be written: {existing} is read-only or not writable by this user; launch from a "
            f"writable folder or set {key} to one"
        )


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
