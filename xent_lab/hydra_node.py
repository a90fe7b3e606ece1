"""What a config's `hydra` node may make Hydra run, checked before Hydra runs any of it.

Hydra instantiates the node's callbacks, launcher and sweeper (`_target_`) and hands its logging sections to
`logging.config.dictConfig` (`class`, `()`), all before the job function, where `xent_lab.config.validate` checks
the rest of the config. A shared experiment YAML could name any importable callable there. So the entry point
composes the config as Hydra will (the same config folder, name and overrides) and refuses any code-naming key
under `hydra` that is not one of the project's own choices below.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xent_lab.errors import ConfigError

_SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"
# Each code-naming key Hydra reads from the node, and the values the project's configs use.
ALLOWED = {
    "launcher._target_": {
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
        "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
        f"{_SUBMITIT}.SlurmLauncher",
        f"{_SUBMITIT}.LocalLauncher",
    },
    "sweeper._target_": {
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
        "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
    },
    # hydra-optuna-sweeper's grid sampler (conf/hparams_search/), built as a partial: the sweeper adds the grid.
    "sweeper.sampler._target_": {"optuna.samplers.GridSampler"},
    "sweeper.sampler._partial_": {True},
    "callbacks.study._target_": {"xent_lab.sweep.callback.StudyCallback"},
}
_LOGGING = ("hydra_logging", "job_logging")
_HANDLERS = {"logging.StreamHandler", "logging.FileHandler"}


def _names_code(path: str, key: str) -> bool:
    """Whether Hydra (or dictConfig, under the logging sections) imports and calls what `key` names."""
    if key.startswith("_") and key.endswith("_"):  # _target_, _args_, _partial_, _convert_, _recursive_
        return True
    return path.split(".")[0] in _LOGGING and key in ("class", "()")


def _allowed(dotted: str, value: Any) -> bool:
    section, _, rest = dotted.partition(".")
    if section in _LOGGING:  # handlers.NAME.class: the standard library's stream and file handlers only
        parts = rest.split(".")
        return len(parts) == 3 and parts[0] == "handlers" and parts[2] == "class" and value in _HANDLERS
    return value in ALLOWED.get(dotted, ())


def check_hydra_node(node: Any, path: str = "") -> None:
    """Refuse a key under `hydra` that names code to run, unless it names one of the project's own choices."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{path}.{key}" if path else str(key)
            if _names_code(path or str(key), str(key)) and not _allowed(dotted, value):
                raise ConfigError(
                    f"invalid config value hydra.{dotted}={value!r}: a config runs no code of its own; the hydra "
                    "node may name only the project's launchers, sweeper, study callback and logging handlers"
                )
            check_hydra_node(value, dotted)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_hydra_node(value, f"{path}[{i}]")


def composed_hydra_node(argv: Sequence[str], entry_dir: Path, conf_dir: str, config_name: str) -> dict[str, Any]:
    """The `hydra` node Hydra will compose for the command line `argv` of the entry point in `entry_dir` (Hydra's
    parser reads the config folder, relative to `entry_dir` as `hydra.main` takes it, the name, an extra folder and
    the overrides). Through Hydra's internals, pinned at 1.3.8: its public `compose` refuses the sweep syntax of
    `-m` launches."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    args: argparse.Namespace = get_args_parser().parse_args(list(argv))
    search_path = create_config_search_path(f"file://{(entry_dir / (args.config_path or conf_dir)).resolve()}")
    if args.config_dir is not None:  # as hydra.main adds it
        where = f"file://{Path(args.config_dir).resolve()}"
        search_path.prepend(provider="command-line", path=where, anchor=SearchPathQuery(provider="schema"))
    hydra = Hydra.create_main_hydra2(task_name="xent_lab.train", config_search_path=search_path)
    try:
        cfg = hydra.compose_config(
            config_name=args.config_name or config_name,
            overrides=args.overrides,
            run_mode=RunMode.MULTIRUN if args.multirun else RunMode.RUN,
            with_log_configuration=False,
        )
    finally:
        GlobalHydra.instance().clear()
    # Unresolved: an interpolation that would compute a target is refused as written, never evaluated.
    return OmegaConf.to_container(cfg.hydra, resolve=False)
