"""The `hydra` node runs no code of a config's choosing (issue 23, item 3): Hydra instantiates its callbacks,
launcher and sweeper and hands its logging sections to dictConfig before any job, so the entry point checks the
node as Hydra will compose it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.e2e import refused_here
from xent_lab import train
from xent_lab.errors import ConfigError
from xent_lab.hydra_node import check_hydra_node, composed_hydra_node

ENTRY = Path(train.__file__).parent

# A shared experiment file that would run code the moment Hydra set up the launch.
EVIL_EXPERIMENT = """# @package _global_
hydra:
  callbacks:
    evil:
      _target_: builtins.open
      file: {marker}
      mode: w
"""


def node(*argv: str):
    return composed_hydra_node(argv, ENTRY, train.CONF_DIR, "config")


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("hydra/launcher=joblib",),
        ("-m", "seed=0,1", "hydra/launcher=slurm"),
        ("hydra/launcher=submitit_local",),
        ("hydra/job_logging=none", "hydra/hydra_logging=none"),
        ("experiment=mnist_losses", "-m"),
        ("hparams_search=mmce_lambda",),
    ],
)
def test_the_projects_own_launchers_sweeper_callback_and_logging_pass(argv):
    composed = node(*argv)
    check_hydra_node(composed)
    if "-m" in argv and "hydra/launcher=slurm" in argv:  # the sweep syntax is composed as Hydra composes it
        assert composed["launcher"]["_target_"].endswith("submitit_launcher.SlurmLauncher")


@pytest.mark.parametrize(
    "override,key",
    [
        ("+hydra.callbacks.evil._target_=builtins.exec", "hydra.callbacks.evil._target_"),
        ("hydra.callbacks.study._target_=builtins.exec", "hydra.callbacks.study._target_"),
        ("hydra.launcher._target_=os.system", "hydra.launcher._target_"),
        ("+hydra.launcher._args_=[x]", "hydra.launcher._args_"),
        ("hydra.job_logging.handlers.console.class=builtins.exec", "hydra.job_logging.handlers.console.class"),
    ],
)
def test_code_named_under_hydra_is_refused_by_key(override, key):
    with pytest.raises(ConfigError, match=f"invalid config value {key}="):
        check_hydra_node(node(override))


def test_the_search_samplers_code_is_checked_too():
    assert node("hparams_search=mmce_lambda")["sweeper"]["sampler"]["_target_"] == "optuna.samplers.GridSampler"
    with pytest.raises(ConfigError, match="invalid config value hydra.sweeper.sampler._target_='os.system'"):
        check_hydra_node(node("hparams_search=mmce_lambda", "hydra.sweeper.sampler._target_=os.system"))


def test_a_logging_factory_under_hydra_is_refused():
    # dictConfig calls the callable named by "()" (a key the override grammar cannot write; a YAML file can).
    with pytest.raises(ConfigError, match=r"invalid config value hydra.job_logging.filters.f.\(\)='os.system'"):
        check_hydra_node({"job_logging": {"filters": {"f": {"()": "os.system"}}}})


def test_a_shared_experiment_file_naming_code_in_the_hydra_node_runs_nothing(tmp_path, cache_dir):
    # The file sits in an extra config folder (`--config-dir`), as a colleague's study would.
    marker = tmp_path / "ran"
    (tmp_path / "shared" / "experiment").mkdir(parents=True)
    (tmp_path / "shared" / "experiment" / "evil.yaml").write_text(EVIL_EXPERIMENT.format(marker=marker))
    workdir = tmp_path / "launch"
    workdir.mkdir()
    done = refused_here(workdir, cache_dir, "-m", "--config-dir", str(tmp_path / "shared"), "experiment=evil")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: invalid config value hydra.callbacks.evil._target_='builtins.open': a config runs no code of "
        "its own; the hydra node may name only the project's launchers, sweeper, study callback and logging handlers"
    ]
    assert not marker.exists() and list(workdir.iterdir()) == []
