"""The config files a launch validated, and each job's check that they are still the same.

Hydra's launchers compose each job's config from the files on disk when they run it (the basic launcher one job
after another), so a YAML file edited during a launch would give its later jobs another config than the one the
launch checked and recorded. The launch writes the sha256 of every YAML file of its config sources
(`CONFIG_FILES`, in the sweep folder); a job whose files differ is refused with the files named, before it trains.
Any change counts, a comment too: the job cannot tell which of its values came from the old files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from xent_lab import atomic
from xent_lab.errors import ConfigError

CONFIG_FILES = "config_files.json"  # in the sweep folder: source/relative path -> sha256


def source_dirs(hydra_cfg: DictConfig) -> list[Path]:
    """The folders Hydra composes from (`hydra.runtime.config_sources` of schema `file`: conf/, --config-dir)."""
    return [Path(source.path) for source in hydra_cfg.runtime.config_sources if source.schema == "file"]


def file_digests(folders: Iterable[Path]) -> dict[str, str]:
    """`<folder>/<relative path>` -> sha256 of every YAML file under `folders`, links followed (conf/experiment)."""
    digests = {}
    for folder in folders:
        for root, _, names in os.walk(folder, followlinks=True):
            for name in names:
                if name.endswith((".yaml", ".yml")):
                    path = Path(root) / name
                    digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


def record_config_files(digests: Mapping[str, str], sweep_dir: Path) -> None:
    """Write the digests of the launch's config files (`file_digests`) into its sweep folder (made if missing)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(sweep_dir / CONFIG_FILES, json.dumps(digests, indent=1))


def _changed(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    return sorted(path for path in {*recorded, *now} if recorded.get(path) != now.get(path))


def check_config_files() -> None:
    """In a job of a sweep: raise ConfigError when a config file of its launch changed since the launch validated
    it. Nothing to check outside a sweep, or in one whose launch recorded no files (no study callback)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    recorded_at = Path(hydra_cfg.sweep.dir) / CONFIG_FILES
    if not recorded_at.exists():
        return
    changed = _changed(json.loads(recorded_at.read_text()), file_digests(source_dirs(hydra_cfg)))
    if changed:
        raise ConfigError(
            f"config file(s) changed since the launch validated them: {', '.join(changed)}; this job would run "
            "another config than the launch recorded, so it is refused; launch again once the files are final"
        )
