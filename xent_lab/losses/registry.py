"""The loss registry: one entry per `loss=NAME`, the one place that says what the harness knows of a loss.

An entry gives, per task (two classes, or more), the head the model needs, how labels are encoded and the
loss class per `loss.impl` (ours, Keras' built-in counterpart or None, the textbook form or None); the
loss's own config keys, with the values each takes; the keys its run note shows; and any check that
spans keys. `xent_lab.objectives` (head and loss object), `xent_lab.config` (the `loss.*` checks), the
run note and the README's loss table are all derived from it: `python -m xent_lab.losses.registry README.md`
rewrites that table (a test holds the README to it).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from xent_lab.errors import NotApplicable, invalid_value
from xent_lab.heads import Head
from xent_lab.losses import classes, naive
from xent_lab.losses._checks import FLSD53, is_int, is_number
from xent_lab.losses.adafocal import AdaFocalCrossentropy
from xent_lab.losses.brier import CategoricalBrier
from xent_lab.losses.confidence_penalty import ConfidencePenaltyCrossentropy
from xent_lab.losses.dual_focal import DualFocalCrossentropy
from xent_lab.losses.logitnorm import LogitNormCrossentropy
from xent_lab.losses.mbls import MbLSCrossentropy
from xent_lab.losses.mdca import MDCACrossentropy
from xent_lab.losses.mmce import MMCECrossentropy
from xent_lab.losses.poly import BinaryPolyCrossentropy, CategoricalPolyCrossentropy
from xent_lab.losses.sparse_focal import SparseCategoricalFocalCrossentropy

# How integer labels are encoded for the loss.
SPARSE, ONEHOT, BINARY = "sparse", "onehot", "binary"
IMPLS = ("custom", "builtin", "naive")
_OWNERS = {"custom": "our ", "builtin": "Keras' ", "naive": "the naive "}


@dataclass(frozen=True)
class Key:
    """A config key `loss.NAME`: the values it takes (a check, and the words the error uses for them)."""

    name: str
    valid: Callable[[Any], bool]
    expected: str
    arg: str = ""  # the constructor argument it sets, when not `name`

    def check(self, value: Any) -> None:
        if not self.valid(value):
            raise invalid_value(f"loss.{self.name}", value, self.expected)


@dataclass(frozen=True)
class Form:
    """A loss on one kind of task: the model's head, the labels' encoding and the class per `loss.impl`."""

    head: Head
    labels: str  # SPARSE | ONEHOT | BINARY
    custom: type[keras.losses.Loss]  # ours, in xent_lab.losses
    builtin: type[keras.losses.Loss] | None = None  # Keras' counterpart
    naive: type[keras.losses.Loss] | None = None  # the textbook form, in xent_lab.losses.naive
    args: tuple[str, ...] = ()  # the loss's own keys this class takes, in constructor order

    def loss_class(self, impl: str) -> type[keras.losses.Loss] | None:
        return {"custom": self.custom, "builtin": self.builtin, "naive": self.naive}[impl]

    def units(self, num_classes: int) -> int:
        """The width of the logits layer."""
        return 1 if self.head == Head.SIGMOID else num_classes


@dataclass(frozen=True)
class Loss:
    """One `loss=NAME`: its forms on a binary and a multi-class task, its keys and its run-note settings."""

    name: str
    binary: Form  # on a task with two classes
    multiclass: Form
    keys: tuple[Key, ...] = ()  # beyond COMMON_KEYS
    note: tuple[str, ...] = ()  # the settings that tell its runs apart, shown in the run note
    # Checks across keys, or against the task or the impl: (the loss's config, number of classes).
    check: Callable[[Mapping[str, Any], int], None] | None = None

    @property
    def module(self) -> str:
        return self.multiclass.custom.__module__

    def form(self, num_classes: int) -> Form:
        return self.binary if num_classes == 2 else self.multiclass

    @property
    def impls(self) -> tuple[str, ...]:
        """The impls it has on every task."""
        return tuple(i for i in IMPLS if self.binary.loss_class(i) and self.multiclass.loss_class(i))


def _number(low: float, *, open_low: bool = False, high: float = float("inf"), open_high: bool = False) -> Callable:
    def valid(value: Any) -> bool:
        return (
            is_number(value)
            and (value > low if open_low else value >= low)
            and (value < high if open_high else value <= high)
        )

    return valid


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _gamma(value: Any) -> bool:
    return value == FLSD53 or _number(0)(value)


def _alpha(value: Any) -> bool:
    return _number(0)(value) or (isinstance(value, list) and all(_number(0)(a) for a in value))


COMMON_KEYS = (
    Key("from_logits", _boolean, "true or false"),
    Key("label_smoothing", _number(0, high=1), "a number in [0, 1]"),
    Key("class_weight", lambda v: v in (None, "balanced"), "null or 'balanced'"),
    Key("epsilon", _number(0, open_low=True, high=1, open_high=True), "a number in (0, 1)"),
)
GAMMA = Key("gamma", _gamma, f"a number >= 0 or '{FLSD53}'")
ALPHA = Key("alpha", _alpha, "a number >= 0 or a list with one weight per class")


def _check_focal(cfg: Mapping[str, Any], num_classes: int) -> None:
    """FLSD-53 needs our impl or the naive one; alpha is one weight per class, or one weight on a binary task."""
    if cfg["gamma"] == FLSD53 and cfg["impl"] == "builtin":
        raise NotApplicable(
            f"invalid config value loss.gamma={cfg['gamma']!r}: Keras' built-in focal loss takes a number; "
            "the adaptive FLSD-53 gamma needs loss.impl=custom (or naive)"
        )
    alpha, binary = cfg["alpha"], cfg["name"] == "focal" and num_classes == 2
    if isinstance(alpha, list):
        if binary:
            raise invalid_value("loss.alpha", alpha, "a scalar for a binary task (binary focal takes one alpha)")
        if len(alpha) != num_classes:
            raise invalid_value("loss.alpha", alpha, f"a list of {num_classes} numbers >= 0, one per class")
    elif binary and cfg["apply_class_balancing"] and alpha > 1:
        raise invalid_value("loss.alpha", alpha, "a number in [0, 1] with apply_class_balancing=true")


def _check_adafocal(cfg: Mapping[str, Any], num_classes: int) -> None:
    """The gamma bounds enclose both sides of the switch (a bin at +-switch stays inside them)."""
    switch = cfg["adafocal_switch"]
    if not cfg["adafocal_gamma_min"] <= -switch:
        raise invalid_value("loss.adafocal_gamma_min", cfg["adafocal_gamma_min"], f"a number <= -{switch} (-switch)")
    if not cfg["adafocal_gamma_max"] >= switch:
        raise invalid_value("loss.adafocal_gamma_max", cfg["adafocal_gamma_max"], f"a number >= {switch} (switch)")


def _same(name: str, form: Form, **details: Any) -> Loss:
    """A loss with one form on every task; the form takes all of the loss's own keys, in their order, unless it
    names the ones it takes."""
    if not form.args:
        form = dataclasses.replace(form, args=tuple(key.name for key in details.get("keys", ())))
    return Loss(name, form, form, **details)


REGISTRY = (
    Loss(
        "bce",
        Form(
            Head.SIGMOID, BINARY, classes.BinaryCrossentropy, keras.losses.BinaryCrossentropy, naive.BinaryCrossentropy
        ),
        Form(
            Head.SIGMOID_OVR,
            ONEHOT,
            classes.BinaryCrossentropy,
            keras.losses.BinaryCrossentropy,
            naive.BinaryCrossentropy,
        ),
    ),
    _same(
        "cce",
        Form(
            Head.SOFTMAX,
            ONEHOT,
            classes.CategoricalCrossentropy,
            keras.losses.CategoricalCrossentropy,
            naive.CategoricalCrossentropy,
        ),
    ),
    _same(
        "sparse_cce",
        Form(
            Head.SOFTMAX,
            SPARSE,
            classes.SparseCategoricalCrossentropy,
            keras.losses.SparseCategoricalCrossentropy,
            naive.SparseCategoricalCrossentropy,
        ),
    ),
    Loss(
        "focal",
        Form(
            Head.SIGMOID,
            BINARY,
            classes.BinaryFocalCrossentropy,
            keras.losses.BinaryFocalCrossentropy,
            naive.BinaryFocalCrossentropy,
            args=("gamma", "alpha", "apply_class_balancing"),
        ),
        Form(
            Head.SOFTMAX,
            ONEHOT,
            classes.CategoricalFocalCrossentropy,
            keras.losses.CategoricalFocalCrossentropy,
            naive.CategoricalFocalCrossentropy,
            args=("gamma", "alpha"),
        ),
        keys=(GAMMA, ALPHA, Key("apply_class_balancing", _boolean, "true or false")),
        note=("gamma",),
        check=_check_focal,
    ),
    _same(
        "sparse_focal",
        Form(Head.SOFTMAX, SPARSE, SparseCategoricalFocalCrossentropy),
        keys=(GAMMA, ALPHA, Key("ignore_class", lambda v: v is None or is_int(v), "null or an integer label")),
        note=("gamma",),
        check=_check_focal,
    ),
    Loss(
        "poly1",
        Form(Head.SIGMOID, BINARY, BinaryPolyCrossentropy, args=("poly_epsilon",)),
        Form(Head.SOFTMAX, ONEHOT, CategoricalPolyCrossentropy, args=("poly_epsilon",)),
        keys=(Key("poly_epsilon", _number(-1), "a number >= -1 (below, the loss can be negative)", arg="epsilon"),),
        note=("poly_epsilon",),
    ),
    _same("brier", Form(Head.SOFTMAX, ONEHOT, CategoricalBrier)),
    _same(
        "mmce",
        Form(Head.SOFTMAX, ONEHOT, MMCECrossentropy),
        keys=(
            Key("mmce_weight", _number(0), "a number >= 0", arg="weight"),
            Key("mmce_kernel_width", _number(0, open_low=True), "a number > 0", arg="kernel_width"),
            Key("mmce_weighted", _boolean, "true or false", arg="weighted"),
        ),
        note=("mmce_weight", "mmce_weighted"),
    ),
    # The calibration regularizers below are softmax losses on every task: on two classes a 2-way softmax is
    # the sigmoid of the logit difference, so a one-sigmoid form would be the same loss under another head.
    _same(
        "confidence_penalty",
        Form(Head.SOFTMAX, ONEHOT, ConfidencePenaltyCrossentropy),
        keys=(Key("cp_beta", _number(0), "a number >= 0", arg="beta"),),
        note=("cp_beta",),
    ),
    _same(
        "mbls",
        Form(Head.SOFTMAX, ONEHOT, MbLSCrossentropy),
        keys=(
            Key("mbls_margin", _number(0), "a number >= 0", arg="margin"),
            Key("mbls_weight", _number(0), "a number >= 0", arg="weight"),
        ),
        note=("mbls_margin", "mbls_weight"),
    ),
    _same(
        "mdca",
        Form(Head.SOFTMAX, ONEHOT, MDCACrossentropy),
        keys=(Key("mdca_beta", _number(0), "a number >= 0", arg="beta"),),
        note=("mdca_beta",),
    ),
    # The next three need the softmax on the binary task too: LogitNorm normalizes a vector of logits (one logit's
    # normalized value is +-1/tau whatever it is), dual focal reads the other classes' probabilities, and AdaFocal
    # is kept to one form (its bins are of the label's probability either way).
    _same(
        "logitnorm",
        Form(Head.SOFTMAX, ONEHOT, LogitNormCrossentropy),
        keys=(Key("logitnorm_tau", _number(0, open_low=True), "a number > 0", arg="tau"),),
        note=("logitnorm_tau",),
    ),
    _same(
        "dual_focal",
        Form(Head.SOFTMAX, ONEHOT, DualFocalCrossentropy),
        keys=(Key("gamma", _number(0), "a number >= 0"),),
        note=("gamma",),
    ),
    _same(
        "adafocal",
        Form(Head.SOFTMAX, ONEHOT, AdaFocalCrossentropy),
        keys=(
            Key("adafocal_bins", lambda v: is_int(v) and v >= 1, "an integer >= 1", arg="n_bins"),
            Key("adafocal_gamma_initial", is_number, "a number", arg="gamma_initial"),
            Key("adafocal_lambda", _number(0), "a number >= 0", arg="lam"),
            Key("adafocal_switch", _number(0), "a number >= 0", arg="switch"),
            Key("adafocal_gamma_min", is_number, "a number <= -adafocal_switch", arg="gamma_min"),
            Key("adafocal_gamma_max", is_number, "a number >= adafocal_switch", arg="gamma_max"),
        ),
        note=("adafocal_gamma_initial", "adafocal_lambda"),
        check=_check_adafocal,
    ),
)
LOSSES = {loss.name: loss for loss in REGISTRY}


def validate(cfg: Mapping[str, Any], num_classes: int) -> None:
    """Raise ConfigError (NotApplicable for a valid choice with no implementation) for the first invalid key of
    the loss config `cfg` (resolved, plain Python) on a task with `num_classes` classes."""
    loss = LOSSES.get(cfg.get("name"))
    if loss is None:
        raise invalid_value("loss.name", cfg.get("name"), "one of " + ", ".join(LOSSES))
    impl = cfg["impl"]
    if impl not in IMPLS:
        raise invalid_value("loss.impl", impl, "one of " + ", ".join(IMPLS))
    for key in COMMON_KEYS:
        key.check(cfg[key.name])
    if impl not in loss.impls:
        every = ", ".join(other.name for other in REGISTRY if other.impls == IMPLS)
        raise NotApplicable(
            f"invalid config value loss.impl={impl!r}: expected {' or '.join(map(repr, loss.impls))} with "
            f"loss={loss.name} (only {every} have a Keras built-in and a naive form)"
        )
    if impl != "naive" and cfg["epsilon"] != naive.EPSILON:
        raise NotApplicable(
            f"invalid config value loss.epsilon={cfg['epsilon']!r}: expected {naive.EPSILON} (the default) with "
            f"loss.impl={impl!r}; loss.epsilon is the epsilon of impl=naive's log(p + epsilon) only (the other "
            "impls clip at Keras' own)"
        )
    loss_class = loss.form(num_classes).loss_class(impl)
    if cfg["label_smoothing"] and "label_smoothing" not in inspect.signature(loss_class).parameters:
        raise NotApplicable(
            f"invalid config value loss.label_smoothing={cfg['label_smoothing']!r}: expected 0 with "
            f"loss={loss.name} loss.impl={impl} ({_OWNERS[impl]}{loss_class.__name__} has no label smoothing); "
            "use loss.impl=custom"
        )
    for key in loss.keys:
        key.check(cfg[key.name])
    if loss.check is not None:
        loss.check(cfg, num_classes)


def constructor_args(loss: Loss, form: Form, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `form`'s class for the loss config `cfg`."""
    kwargs: dict[str, Any] = {"from_logits": cfg["from_logits"]}
    if cfg["label_smoothing"]:
        # Only passed when used, so Keras' sparse loss (which has no such argument) works unsmoothed.
        kwargs["label_smoothing"] = cfg["label_smoothing"]
    if cfg["impl"] == "naive":
        kwargs["epsilon"] = cfg["epsilon"]
    keys = {key.name: key for key in loss.keys}
    kwargs.update({keys[name].arg or name: cfg[name] for name in form.args})
    return kwargs


def note_settings(cfg: Mapping[str, Any]) -> list[str]:
    """`key=value` for each setting the run note shows for the loss config `cfg`."""
    return [f"{key}={cfg[key]}" for key in LOSSES[cfg["name"]].note]


_HEADS = {Head.SIGMOID: "1 sigmoid", Head.SIGMOID_OVR: "{k} sigmoids (one-vs-rest)", Head.SOFTMAX: "{k}-way softmax"}
_LABELS = {BINARY: "0/1 labels", ONEHOT: "one-hot labels", SPARSE: "integer labels"}
TABLE_START = "<!-- loss table: generated from the registry by python -m xent_lab.losses.registry README.md -->"
TABLE_END = "<!-- end of the loss table -->"


def _describe(form: Form, num_classes: int) -> str:
    return f"{_HEADS[form.head].format(k=num_classes)}, {_LABELS[form.labels]}, `{form.custom.__name__}`"


def markdown_table() -> str:
    """The README's table of losses: per loss its head, labels and class on IMDB and MNIST, impls and keys."""
    lines = [
        "| `loss=` | IMDB (2 classes) | MNIST (10 classes) | `loss.impl` | its own keys |",
        "|---|---|---|---|---|",
    ]
    for loss in REGISTRY:
        keys = "; ".join(f"`{key.name}`: {key.expected}" for key in loss.keys) or "—"
        lines.append(
            f"| `{loss.name}` | {_describe(loss.binary, 2)} | {_describe(loss.multiclass, 10)} | "
            f"{', '.join(loss.impls)} | {keys} |"
        )
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """`readme` with the text between TABLE_START and TABLE_END replaced by `markdown_table()`."""
    pattern = re.compile(re.escape(TABLE_START) + r"\n.*?" + re.escape(TABLE_END), re.DOTALL)
    if not pattern.search(readme):
        raise ValueError(f"no loss table between {TABLE_START!r} and {TABLE_END!r}")
    return pattern.sub(lambda _: f"{TABLE_START}\n{markdown_table()}\n{TABLE_END}", readme)


if __name__ == "__main__":
    for path in map(Path, sys.argv[1:]):
        path.write_text(with_table(path.read_text()))
    if len(sys.argv) == 1:
        print(markdown_table())
