"""The real Hydra config composes for every group choice, and invalid values are rejected by key."""

from __future__ import annotations

import hashlib

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.helpers.e2e import CONF_DIR
from tests.helpers.e2e import composed as compose_config  # each set of group choices composed once
from xent_lab import config
from xent_lab.errors import ConfigError, NotApplicable


class TestCompose:
    def test_defaults_are_mnist_mlp_cce(self):
        cfg = compose_config()
        assert (cfg.dataset.name, cfg.model.name, cfg.loss.name, cfg.loss.impl) == ("mnist", "mlp", "cce", "builtin")
        assert cfg.loss.from_logits is True
        config.validate(cfg)

    def test_imdb_defaults_to_a_text_model(self):
        cfg = compose_config("dataset=imdb")
        assert cfg.model.name == "embedding_avg" and cfg.model.input == "text"
        config.validate(cfg)

    @pytest.mark.parametrize(
        "dataset,model",
        [("mnist", "mlp"), ("mnist", "cnn"), ("imdb", "embedding_avg"), ("imdb", "text_cnn"), ("imdb", "bilstm")],
    )
    @pytest.mark.parametrize("loss", ["bce", "cce", "sparse_cce", "focal"])
    @pytest.mark.parametrize("impl", ["builtin", "custom", "naive"])
    def test_every_combination_validates(self, dataset, model, loss, impl):
        cfg = compose_config(f"dataset={dataset}", f"model={model}", f"loss={loss}", f"loss.impl={impl}")
        config.validate(cfg)
        assert (cfg.dataset.name, cfg.model.name, cfg.loss.name, cfg.loss.impl) == (dataset, model, loss, impl)
        # Every loss file starts from loss/_common.yaml: the shared keys are there with their defaults.
        assert (cfg.loss.from_logits, cfg.loss.label_smoothing, cfg.loss.class_weight) == (True, 0.0, None)
        assert cfg.loss.epsilon == 1e-15

    @pytest.mark.parametrize("dataset", ["mnist", "imdb"])
    @pytest.mark.parametrize("loss", ["sparse_focal", "poly1", "brier", "mmce", "confidence_penalty", "mbls", "mdca"])
    def test_our_own_losses_default_to_custom_and_are_not_applicable_elsewhere(self, dataset, loss):
        cfg = compose_config(f"dataset={dataset}", f"loss={loss}")
        config.validate(cfg)
        assert (cfg.loss.name, cfg.loss.impl) == (loss, "custom")
        for impl in ("builtin", "naive"):
            # NotApplicable: a sweep over loss x impl skips these jobs instead of failing them.
            with pytest.raises(NotApplicable, match=f"invalid config value loss.impl='{impl}': expected 'custom'"):
                config.validate(compose_config(f"dataset={dataset}", f"loss={loss}", f"loss.impl={impl}"))

    def test_preset_defaults(self):
        assert compose_config("loss=poly1").loss.poly_epsilon == 1.0
        mmce = compose_config("loss=mmce").loss
        assert (mmce.mmce_weight, mmce.mmce_kernel_width, mmce.mmce_weighted) == (2.0, 0.4, True)
        assert compose_config("loss=confidence_penalty").loss.cp_beta == 0.1
        mbls = compose_config("loss=mbls").loss
        assert (mbls.mbls_margin, mbls.mbls_weight) == (10.0, 0.1)
        assert compose_config("loss=mdca").loss.mdca_beta == 1.0
        focal = compose_config("loss=sparse_focal").loss
        assert (focal.gamma, focal.alpha, focal.ignore_class) == (2.0, 1.0, None)

    def test_flatten_gives_dotted_string_params(self):
        flat = config.flatten(compose_config("loss=focal"))
        assert flat["loss.gamma"] == "2.0"
        assert flat["trainer.optimizer._target_"] == "keras.optimizers.Adam"
        assert flat["dataset.limit.train"] == "None"
        assert all(isinstance(v, str) for v in flat.values())


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["trainer.epochs=-1"], "trainer.epochs"),
        (["trainer.epochs=0"], "trainer.epochs"),
        (["trainer.batch_size=1.5"], "trainer.batch_size"),
        (["loss.label_smoothing=1.5"], "loss.label_smoothing"),
        (["loss.label_smoothing=-0.1"], "loss.label_smoothing"),
        (["loss=focal", "loss.gamma=-1"], "loss.gamma"),
        (["loss=focal", "loss.gamma=flsd53", "loss.impl=builtin"], "loss.gamma"),
        (["loss=focal", "loss.alpha=[1,2]"], "loss.alpha"),
        (["loss=focal", "loss.alpha=-0.5"], "loss.alpha"),
        (["loss=sparse_cce", "loss.label_smoothing=0.1"], "loss.label_smoothing"),
        (["loss.impl=mine"], "loss.impl"),
        (["loss.from_logits=maybe"], "loss.from_logits"),
        (["loss.impl=naive", "loss.epsilon=0"], "loss.epsilon"),
        (["loss.impl=naive", "loss.epsilon=1.5"], "loss.epsilon"),
        (["loss=sparse_focal", "loss.gamma=-0.5"], "loss.gamma"),
        (["loss=sparse_focal", "loss.alpha=[1,2]"], "loss.alpha"),
        (["loss=sparse_focal", "loss.alpha=-1"], "loss.alpha"),
        (["loss=sparse_focal", "loss.ignore_class=1.5"], "loss.ignore_class"),
        (["loss=poly1", "loss.poly_epsilon=-1.5"], "loss.poly_epsilon"),
        (["loss=poly1", "loss.poly_epsilon=abc"], "loss.poly_epsilon"),
        (["loss=mmce", "loss.mmce_weight=-1"], "loss.mmce_weight"),
        (["loss=mmce", "loss.mmce_kernel_width=0"], "loss.mmce_kernel_width"),
        (["loss=mmce", "loss.mmce_weighted=maybe"], "loss.mmce_weighted"),
        (["loss=confidence_penalty", "loss.cp_beta=-0.1"], "loss.cp_beta"),
        (["loss=mbls", "loss.mbls_margin=-1"], "loss.mbls_margin"),
        (["loss=mbls", "loss.mbls_weight=abc"], "loss.mbls_weight"),
        (["loss=mdca", "loss.mdca_beta=-1"], "loss.mdca_beta"),
        (["trainer.device=tpu"], "trainer.device"),
        (["trainer.precision=bfloat16"], "trainer.precision"),
        (["trainer.optimizer.learning_rate=0"], "trainer.optimizer.learning_rate"),
        (["trainer.early_stopping.patience=-2"], "trainer.early_stopping.patience"),
        (["dataset.val_size=0"], "dataset.val_size"),
        (["dataset.limit.train=-5"], "dataset.limit.train"),
        (["dataset=imdb", "model=cnn"], "model.input"),
        (["model.dropout=1.0"], "model.dropout"),
        (["calibration.n_bins=0"], "calibration.n_bins"),
        (["seed=abc"], "seed"),
        (["+study.optimized_metric=3"], "study.optimized_metric"),
        (["+study.optimized_metric=''"], "study.optimized_metric"),
    ],
)
def test_invalid_value_is_rejected_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"invalid config value {key}="):
        config.validate(compose_config(*overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["loss=poly1", "loss.poly_epsilon=abc"],
            "invalid config value loss.poly_epsilon='abc': expected a number >= -1 (below, the loss can be negative)",
        ),
        (
            ["loss=brier", "loss.impl=builtin"],
            "invalid config value loss.impl='builtin': expected 'custom' with loss=brier "
            "(only bce, cce, sparse_cce, focal have a Keras built-in and a naive form)",
        ),
        (
            ["loss=focal", "loss.alpha=[1,2]"],
            "invalid config value loss.alpha=[1, 2]: expected a list of 10 numbers >= 0, one per class",
        ),
        (
            ["dataset=imdb", "loss=focal", "loss.alpha=[1,2]"],
            "invalid config value loss.alpha=[1, 2]: expected a scalar for a binary task "
            "(binary focal takes one alpha)",
        ),
        (
            ["dataset=imdb", "loss=focal", "loss.apply_class_balancing=true", "loss.alpha=2"],
            "invalid config value loss.alpha=2: expected a number in [0, 1] with apply_class_balancing=true",
        ),
        (
            ["loss=sparse_cce", "loss.label_smoothing=0.1"],
            "invalid config value loss.label_smoothing=0.1: expected 0 with loss=sparse_cce loss.impl=builtin "
            "(Keras' SparseCategoricalCrossentropy has no label smoothing); use loss.impl=custom",
        ),
        (
            ["loss=_common"],
            "invalid config value loss.name=None: expected one of bce, cce, sparse_cce, focal, sparse_focal, poly1, "
            "brier, mmce, confidence_penalty, mbls, mdca, logitnorm, dual_focal, adafocal",
        ),
        (["loss.class_weight=yes"], "invalid config value loss.class_weight='yes': expected null or 'balanced'"),
        (["loss=focal", "loss.gamma=-1"], "invalid config value loss.gamma=-1: expected a number >= 0 or 'flsd53'"),
        (
            ["loss=logitnorm", "loss.logitnorm_tau=0"],
            "invalid config value loss.logitnorm_tau=0: expected a number > 0",
        ),
        (
            ["loss=dual_focal", "loss.gamma=flsd53"],
            "invalid config value loss.gamma='flsd53': expected a number >= 0",
        ),
        (
            ["loss=adafocal", "loss.adafocal_bins=0"],
            "invalid config value loss.adafocal_bins=0: expected an integer >= 1",
        ),
        (
            ["loss=adafocal", "loss.adafocal_switch=0.5", "loss.adafocal_gamma_min=-0.2"],
            "invalid config value loss.adafocal_gamma_min=-0.2: expected a number <= -0.5 (-switch)",
        ),
    ],
)
def test_loss_errors_are_one_line_naming_the_key_and_its_values(overrides, message):
    """The loss checks come from the registry (xent_lab/losses/registry.py); the messages are the hand checks'."""
    with pytest.raises(ConfigError) as raised:
        config.validate(compose_config(*overrides))
    assert str(raised.value) == message


def test_custom_sparse_loss_accepts_label_smoothing():
    cfg = compose_config("loss=sparse_cce", "loss.impl=custom", "loss.label_smoothing=0.1")
    config.validate(cfg)
    assert cfg.loss.label_smoothing == 0.1
    # The same smoothing on Keras' built-in, which has none, is the rejected case.
    with pytest.raises(ConfigError, match="loss.label_smoothing"):
        config.validate(compose_config("loss=sparse_cce", "loss.impl=builtin", "loss.label_smoothing=0.1"))


def test_naive_impl_takes_flsd53_and_sparse_label_smoothing():
    # The textbook focal factor with gamma 5 or 3 is plain arithmetic; naive's sparse loss smooths like ours.
    config.validate(compose_config("loss=focal", "loss.impl=naive", "loss.gamma=flsd53"))
    config.validate(compose_config("loss=sparse_cce", "loss.impl=naive", "loss.label_smoothing=0.1"))
    config.validate(compose_config("loss=sparse_focal", "loss.alpha=[1,1,1,1,1,1,1,1,1,2]", "loss.ignore_class=3"))
    config.validate(compose_config("loss=poly1", "loss.poly_epsilon=-1"))  # the boundary is allowed


def test_per_class_alpha_of_the_right_length_is_accepted():
    cfg = compose_config("loss=focal", "loss.alpha=[1,1,1,1,1,1,1,1,1,2]")
    config.validate(cfg)
    assert list(cfg.loss.alpha) == [1] * 9 + [2]
    with pytest.raises(ConfigError, match="loss.alpha"):  # one weight short
        config.validate(compose_config("loss=focal", "loss.alpha=[1,1,1,1,1,1,1,1,2]"))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["evaluation.shift.seed=-1"], "invalid config value evaluation.shift.seed=-1: expected an integer >= 0"),
        (
            ["evaluation.shift.bootstrap=1.5"],
            "invalid config value evaluation.shift.bootstrap=1.5: expected an integer >= 0",
        ),
        (
            ["evaluation.shift.image.rotate=[0,400.5,nan]"],
            "invalid config value evaluation.shift.image.rotate=[0, 400.5, nan]: expected a list of levels, each an "
            "angle in degrees",
        ),
        (
            ["evaluation.shift.image.gaussian_noise=[1,6]"],
            "invalid config value evaluation.shift.image.gaussian_noise=[1, 6]: expected a list of levels, each a "
            "severity from 0 to 5",
        ),
        (
            ["evaluation.shift.image.contrast=3"],
            "invalid config value evaluation.shift.image.contrast=3: expected a list of levels, each a severity from "
            "0 to 5",
        ),
        (
            ["evaluation.shift.text.oov=[0.1,0.1]"],
            "invalid config value evaluation.shift.text.oov=[0.1, 0.1]: expected a list of distinct levels",
        ),
        (
            ["dataset=imdb", "evaluation.shift.text.word_dropout=[-0.1]"],
            "invalid config value evaluation.shift.text.word_dropout=[-0.1]: expected a list of levels, each a rate "
            "in [0, 1]",
        ),
        (
            ["++evaluation.shift.text.rotate=[90]"],
            "invalid config value evaluation.shift.text.rotate=[90]: expected a shift of text data: one of "
            "word_dropout, oov",
        ),
        (
            ["evaluation.shift.image=null"],
            "invalid config value evaluation.shift.image=None: expected a mapping {shift: [levels]}",
        ),
    ],
)
def test_shift_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as raised:
        config.validate(compose_config(*overrides))
    assert str(raised.value) == message


def test_shift_lists_default_to_the_full_plan_and_quick_to_a_small_one():
    shift = compose_config().evaluation.shift
    assert list(shift.image.rotate) == list(range(0, 181, 15))
    assert {name: list(levels) for name, levels in shift.image.items() if name != "rotate"} == {
        name: [1, 2, 3, 4, 5] for name in ("gaussian_noise", "gaussian_blur", "contrast")
    }
    quick = compose_config("debug=quick").evaluation.shift
    assert OmegaConf.to_container(quick) == {
        "seed": 0,
        "bootstrap": 50,
        "image": {"rotate": [0, 90], "gaussian_noise": [3], "gaussian_blur": [], "contrast": []},
        "text": {"word_dropout": [0.2], "oov": []},
    }
    config.validate(compose_config("evaluation.shift.image.rotate=[]", "evaluation.shift.bootstrap=0"))


def test_debug_quick_shrinks_any_run_and_experiment():
    for overrides in ((), ("dataset=imdb",), ("experiment=mnist_losses",)):
        cfg = compose_config(*overrides, "debug=quick")
        config.validate(cfg)
        assert (cfg.dataset.limit.train, cfg.dataset.limit.test, cfg.dataset.val_size) == (2000, 1000, 1000)
        assert cfg.trainer.epochs == 1
    # Without it, the study keeps its own sizes.
    assert compose_config("experiment=mnist_losses").dataset.limit.train == 20000


def test_a_base_file_is_not_a_loss():
    with pytest.raises(ConfigError, match="loss.name"):
        config.validate(compose_config("loss=_common"))


def _one_job_per_value(jobs: list[list[str]]) -> list[list[str]]:
    """The first job, and for each swept value the job that differs from it in that value only."""
    first = jobs[0]
    return [first, *(job for job in jobs if sum(a != b for a, b in zip(job, first)) == 1)]


def _study_digest(name: str, seeds: tuple[str, ...] | None = None) -> str:
    """One digest of the config hashes and the composed YAML of a study's jobs, each swept value once; with
    `seeds`, only the jobs of those seeds."""
    from xent_lab.study import config_hash
    from xent_lab.sweep.launch import sweep_jobs  # also registers the ${launch_id:} resolver

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        launch = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
        jobs = []
        for job in _one_job_per_value(sweep_jobs(launch)):
            if seeds is not None and not any(override in {f"seed={s}" for s in seeds} for override in job):
                continue
            cfg = compose("config", overrides=[f"experiment={name}", *job])
            jobs.append(f"{' '.join(job)} {config_hash(cfg)} {OmegaConf.to_yaml(cfg)}")
    return hashlib.sha256("\n".join(jobs).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "name,digest,first_seeds",
    [
        ("imdb_losses", "d2752c18ea55e610", "47c35bcdc5df2bb2"),
        ("mnist_imbalance", "fda805d75858b023", "afe2f4f360e7e98d"),
        ("mnist_losses", "5354af1efaac2284", "5354af1efaac2284"),
        ("overfit_calibration", "7cb427644fb4bf85", "aa2fc9bebfa76d24"),
        ("stability", "f683821e1828728e", "232425739496fa03"),
    ],
)
@pytest.mark.slow
def test_committed_studies_compose_and_hash_as_before(name, digest, first_seeds):
    """Pinned before the loss registry replaced the hand checks: relaunching a committed study must reuse its
    runs (the config hash), and its jobs' composed configs, key order included, must not change. Re-pinned once
    for `study.reuse_across_commits` (issue 23, item 8): without that key the digests were those pinned before,
    and `study.*` is not hashed, so no config hash changed. Re-pinned for `evaluation.shift`: its keys are hashed,
    since a run without the shifted sets' metrics must not stand in for one with them. Re-pinned for
    `study.questions` (with it removed from each job's config the digests were those pinned before; `study.*` is
    not hashed), for the mmce preset (MMCE_w as its authors' code computes it, lambda 2.0: the two studies with
    loss=mmce change in those jobs only, which must train again) and for the seeds sized by `report.power` (the new
    seeds are new jobs; `first_seeds` pins the jobs of seeds 0-2)."""
    assert _study_digest(name) == digest
    assert _study_digest(name, ("0", "1", "2")) == first_seeds


# --------------------------------------------------------------------------- issue 23: refused before training


@pytest.mark.parametrize(
    "override,message",
    [
        (
            # The chain that ran a downloaded pickle: any importable callable was instantiated.
            "trainer.optimizer._target_=numpy.load",
            "invalid config value trainer.optimizer._target_='numpy.load': expected one of Keras' optimizers: "
            "keras.optimizers.Adadelta, keras.optimizers.Adafactor, keras.optimizers.Adagrad, keras.optimizers.Adam, "
            "keras.optimizers.AdamW, keras.optimizers.Adamax, keras.optimizers.Ftrl, keras.optimizers.Lamb, "
            "keras.optimizers.Lion, keras.optimizers.Nadam, keras.optimizers.RMSprop, keras.optimizers.SGD",
        ),
        (
            "+trainer.optimizer.file={_target_:keras.utils.get_file,origin:'http://127.0.0.1:9/x.npy'}",
            "invalid config value trainer.optimizer.file._target_='keras.utils.get_file': expected no _target_ here: "
            "a config instantiates nothing but trainer.optimizer",
        ),
        (
            "+model.init={_target_:os.getcwd}",
            "invalid config value model.init._target_='os.getcwd': expected no _target_ here: a config instantiates "
            "nothing but trainer.optimizer",
        ),
        (
            "+trainer.optimizer._args_=[1]",
            "invalid config value trainer.optimizer._args_=[1]: expected no _args_ here: a config instantiates "
            "nothing but trainer.optimizer",
        ),
        (
            "+trainer.optimizer.allow_pickle=true",
            "invalid config value trainer.optimizer.allow_pickle=True: expected no such key: keras.optimizers.Adam "
            "takes learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue, "
            "global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor, "
            "gradient_accumulation_steps, name",
        ),
    ],
)
def test_config_runs_no_code_but_a_keras_optimizer(override, message):
    with pytest.raises(ConfigError) as raised:
        config.validate(compose_config(override))
    assert str(raised.value) == message


def test_config_runs_no_code_the_optimizer_is_built_from_the_allowlist_only():
    from xent_lab.training.fit import make_optimizer

    cfg = compose_config("trainer.optimizer._target_=keras.optimizers.SGD", "+trainer.optimizer.momentum=0.9")
    config.validate(cfg)
    optimizer = make_optimizer(cfg.trainer.optimizer)
    assert (type(optimizer).__name__, optimizer.momentum) == ("SGD", 0.9)
    # Built without Hydra's instantiate: a target outside the allowlist is refused even where validate was not run.
    with pytest.raises(ConfigError, match=r"trainer.optimizer._target_='numpy.load'"):
        make_optimizer(OmegaConf.create({"_target_": "numpy.load", "file": "x.npy", "allow_pickle": True}))


@pytest.mark.parametrize("name", ["a/b", "../../x", "a:b", "..", " "])
def test_register_as_a_name_mlflow_refuses_fails_before_training(name):
    with pytest.raises(ConfigError) as raised:
        config.validate(compose_config(f"tracking.register_as='{name}'"))
    assert str(raised.value) == (
        f"invalid config value tracking.register_as={name!r}: expected null or a registered model name of 1 to 256 "
        "characters, without '/' or ':', not '.' or '..'"
    )
    config.validate(compose_config("tracking.register_as='mnist-mlp v1.2'"))  # MLflow takes spaces and dots


@pytest.mark.parametrize("group", ["experiment", "debug"])
def test_unknown_experiment_or_debug_option_is_refused(group):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=f"Could not find '{group}/nosuch'"):
        compose_config(f"{group}=nosuch")
    # Left out, the two groups still add nothing.
    assert compose_config().trainer.epochs == 10


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["seed=-1"],
            "invalid config value seed=-1: expected an integer from 0 to 4294967295 (Keras seeds NumPy with it)",
        ),
        (
            ["seed=4294967296"],
            "invalid config value seed=4294967296: expected an integer from 0 to 4294967295 (Keras seeds NumPy with "
            "it)",
        ),
        (
            ["calibration.n_bins=10000000"],
            "invalid config value calibration.n_bins=10000000: expected at most 10000, the test samples",
        ),
        (
            ["debug=quick", "dataset.limit.test=300", "calibration.n_bins=301"],
            "invalid config value calibration.n_bins=301: expected at most 300, the test samples",
        ),
        (
            ["dataset.val_size=10"],
            "invalid config value dataset.val_size=10: expected at least 20: recalibration fits on the validation set "
            "(or set calibration.temperature_scaling=false calibration.methods=[])",
        ),
        (
            ["tracking.run_name=[a,b]"],
            "invalid config value tracking.run_name=['a', 'b']: expected null or a name of 1 to 250 characters",
        ),
        (
            ["dataset.val_seed=-1"],
            "invalid config value dataset.val_seed=-1: expected an integer >= 0 (NumPy's default_rng seed)",
        ),
    ],
)
def test_values_that_failed_after_training_are_refused_up_front(overrides, message):
    with pytest.raises(ConfigError) as raised:
        config.validate(compose_config(*overrides))
    assert str(raised.value) == message


def test_values_that_failed_after_training_their_bounds_are_accepted():
    config.validate(compose_config("seed=4294967295"))
    config.validate(compose_config("calibration.n_bins=10000"))
    config.validate(compose_config("dataset.val_size=20"))
    config.validate(
        compose_config("dataset.val_size=10", "calibration.temperature_scaling=false", "calibration.methods=[]")
    )
    config.validate(compose_config("tracking.run_name='my run'"))


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a\nb"])
def test_experiment_names_that_cannot_name_a_folder_are_refused(name):
    with pytest.raises(ConfigError) as raised:
        config.validate(compose_config(f"tracking.experiment='{name}'"))
    assert str(raised.value) == (
        f"invalid config value tracking.experiment={name!r}: expected a name of 1 to 500 characters, not blank, "
        "'.' or '..', without control characters"
    )


@pytest.mark.parametrize(
    "study", ["imdb_losses", "mnist_imbalance", "mnist_losses", "overfit_calibration", "stability"]
)
def test_experiment_names_of_the_committed_studies_stay_valid(study):
    from xent_lab.tracking.store import artifact_folder

    cfg = compose_config(f"experiment={study}")
    config.validate(cfg)
    assert cfg.tracking.experiment == study
    assert artifact_folder(study).startswith(f"{study}-")
