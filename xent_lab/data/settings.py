"""The data settings: everything that locates a dataset's files or shapes its arrays, in one frozen object."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xent_lab.data.errors import DataError

DATA_DIR_ENV = "XENT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/xent_lab/data")
# Fields that only say where the files are and how to fetch and check them; every other field shapes the
# arrays, so a field added later lands in the cache key unless it is listed here.
_NOT_SHAPING = ("data_dir", "cache_dir", "download", "verify_checksums")


@dataclass(frozen=True)
class DataSettings:
    """How to load one dataset; see `load_dataset` for what each setting does.

    `vocab_size` and `sequence_length` apply to text datasets only. Build it from the config with
    `from_mapping`, or directly with paths already resolved.
    """

    name: str
    data_dir: Path  # the raw files; never written to except by a download
    cache_dir: Path  # preprocessed arrays
    val_size: int
    val_seed: int
    limit_train: int | None = None
    limit_test: int | None = None
    imbalance: float | None = None
    vocab_size: int = 20000
    sequence_length: int = 256
    download: bool = True
    verify_checksums: bool = True

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> DataSettings:
        """Settings from the resolved `dataset` config group as a plain dict (the keys of conf/dataset/*.yaml).

        `limit: {train, test}` fills `limit_train` / `limit_test`; a missing or null `data_dir` resolves as
        `resolve_data_dir` does, and `cache_dir` has `~` expanded. A key that is not a setting (a typo such as
        `limt`) or a required one that is missing is a DataError naming it.
        """
        values = _flatten(m)
        values.setdefault("data_dir", None)
        fields = {_config_key(f.name): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise DataError(
                f"unknown dataset setting(s) {_listed(unknown)}; the settings are {_listed(fields)} (see conf/dataset/)"
            )
        required = [key for key, f in fields.items() if f.default is dataclasses.MISSING and key != "data_dir"]
        missing = [key for key in required if values.get(key) is None]
        if missing:
            raise DataError(f"dataset setting(s) {_listed(missing)} missing or null; set them in conf/dataset/")
        kwargs = {fields[key].name: value for key, value in values.items()}
        kwargs["data_dir"] = resolve_data_dir(kwargs["data_dir"])
        kwargs["cache_dir"] = Path(kwargs["cache_dir"]).expanduser()
        return cls(**kwargs)

    def shaping(self) -> dict[str, Any]:
        """The settings that shape the arrays, by field name: all but where the files are and how they are fetched."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _NOT_SHAPING}


def resolve_data_dir(configured: str | Path | None) -> Path:
    """The raw-data folder: the configured value if set, else $XENT_DATA_DIR, else ~/.cache/xent_lab/data."""
    chosen = configured or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def _config_key(field_name: str) -> str:
    """The field's key in the config group: limit_train is limit.train; the others are spelled alike."""
    return field_name.replace("limit_", "limit.", 1)


def _flatten(m: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"limit": {"train": 5}} -> {"limit.train": 5}."""
    flat: dict[str, Any] = {}
    for key, value in m.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _listed(keys: Iterable[str]) -> str:
    return ", ".join(f"dataset.{key}" for key in keys)
