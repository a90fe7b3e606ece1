"""IMDB movie reviews from aclImdb_v1.tar.gz, vectorized with a Keras TextVectorization and cached."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from xent_lab.data.cache import CacheUnreadable, read_arrays, write_arrays
from xent_lab.data.dataset import Dataset
from xent_lab.data.errors import DataError
from xent_lab.data.fetch import RemoteFile, ensure_file
from xent_lab.data.progress import note
from xent_lab.data.settings import DataSettings
from xent_lab.data.splits import split_indices

ARCHIVE = "aclImdb_v1.tar.gz"
# Read when loading (not at import), so tests can point it at a local server.
URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256: dict[str, str] = {
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe": "original release, 84,125,825 bytes",
    "35bd800949d44debc9bac42fc584c9780f73f47359c7189ff912b21b90ced937": (
        "trimmed offline copy without train/unsup, urls_*.txt and *.feat, see ../shared/data/README.md"
    ),
}
NUM_CLASSES = 2
INPUT_KIND = "text"
# Bump when the preprocessing changes, so that old cache files are no longer used.
CACHE_FORMAT = 1

# Only the labelled reviews; train/unsup, urls_*.txt, *.feat, README and imdb.vocab are ignored.
_REVIEW = re.compile(r"aclImdb/(train|test)/(pos|neg)/[^/]+\.txt")
_LABEL = {"neg": 0, "pos": 1}
_LINE_BREAK = re.compile(r"<br\s*/?>")  # the reviews keep the site's HTML line breaks
_SPLITS = ("train", "val", "test")
_VECTORIZE_BATCH = 4096


def remote_file() -> RemoteFile:
    """The download and checksum facts of the archive."""
    return RemoteFile(relpath=ARCHIVE, urls=(URL,), known_sha256=SHA256)


def read_reviews(path: Path, progress: bool) -> dict[str, tuple[list[str], np.ndarray]]:
    """Read the labelled reviews straight from the archive, without extracting it.

    Returns {"train": (texts, labels), "test": (texts, labels)}, each sorted by member path so the order
    does not depend on how the archive was packed. Labels are 1 for pos and 0 for neg; `<br />` line breaks
    become spaces.
    """
    note(progress, f"imdb: reading reviews from {path}")
    start = time.monotonic()
    found: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}
    try:
        # Streaming mode ("r|gz"): one sequential pass, no seeking back into the gzip stream.
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                match = _REVIEW.fullmatch(member.name)
                if match is None or not member.isfile():
                    continue
                split, label = match.groups()
                text = tar.extractfile(member).read().decode("utf-8")
                found[split].append((member.name, _LABEL[label], _LINE_BREAK.sub(" ", text)))
    except (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read the IMDB archive {path}: {exc}; the file is corrupt or not {ARCHIVE}; "
            "delete it to re-download, or replace it with a good copy"
        ) from exc
    reviews = {}
    for split, items in found.items():
        labels = {label for _, label, _ in items}
        if labels != {0, 1}:
            raise DataError(f"{path} lacks aclImdb/{split}/pos or aclImdb/{split}/neg reviews; is it {ARCHIVE}?")
        items.sort()
        reviews[split] = ([text for _, _, text in items], np.array([label for _, label, _ in items], np.int64))
    count = sum(len(texts) for texts, _ in reviews.values())
    note(progress, f"imdb: read {count:,} reviews in {time.monotonic() - start:.1f} s")
    return reviews


def _vectorize(
    texts: dict[str, list[str]], vocab_size: int, sequence_length: int, progress: bool
) -> tuple[dict[str, np.ndarray], int]:
    """Adapt a TextVectorization on texts["train"] only, then encode every split; returns ids and vocab size."""
    # Imported here: TensorFlow takes seconds to import, and a cache hit does not need it.
    import keras

    note(progress, f"imdb: adapting the vectorizer on {len(texts['train']):,} training reviews")
    layer = keras.layers.TextVectorization(max_tokens=vocab_size, output_sequence_length=sequence_length)
    layer.adapt(texts["train"])
    note(progress, f"imdb: encoding {sum(map(len, texts.values())):,} reviews")
    encoded = {}
    for split, split_texts in texts.items():
        batches = [
            np.asarray(layer(split_texts[i : i + _VECTORIZE_BATCH]), dtype=np.int32)
            for i in range(0, len(split_texts), _VECTORIZE_BATCH)
        ]
        encoded[split] = np.concatenate(batches) if batches else np.zeros((0, sequence_length), np.int32)
    return encoded, int(layer.vocabulary_size())


def cache_key(settings: DataSettings, archive_sha256: str) -> str:
    """The key of the cached arrays: the archive's digest and every setting that shapes them."""
    # The name is always imdb, and the imbalance thins the arrays after they leave the cache (see
    # loader.long_tailed); leaving both out keeps one cache file for all ratios and the keys of older files.
    shaping = {key: value for key, value in settings.shaping().items() if key not in ("name", "imbalance")}
    payload = {"format": CACHE_FORMAT, "archive_sha256": archive_sha256, **shaping}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, key: str, sequence_length: int, progress: bool) -> dict[str, np.ndarray] | None:
    """The cached arrays if `path` holds a complete, well-formed cache for `key`; None to rebuild."""
    if not path.is_file():
        return None
    try:
        arrays = read_arrays(path)
    except CacheUnreadable as exc:
        note(progress, f"imdb: cache file {path} is unreadable ({exc}); rebuilding it")
        return None
    if not _well_formed(arrays, key, sequence_length):
        note(progress, f"imdb: cache file {path} does not hold the expected arrays; rebuilding it")
        return None
    note(progress, f"imdb: using cached arrays from {path}")
    return arrays


def _well_formed(arrays: dict[str, np.ndarray], key: str, sequence_length: int) -> bool:
    expected = {"key", "vocab_size"} | {f"{xy}_{split}" for xy in "xy" for split in _SPLITS}
    return (
        set(arrays) == expected
        and str(arrays["key"]) == key  # guards against a renamed or copied file of other settings
        and arrays["vocab_size"].shape == ()
        and all(
            arrays[f"x_{s}"].dtype == np.int32
            and arrays[f"x_{s}"].shape[1:] == (sequence_length,)
            and arrays[f"y_{s}"].dtype == np.int64
            and arrays[f"y_{s}"].shape == arrays[f"x_{s}"].shape[:1]
            for s in _SPLITS
        )
    )


def _build(archive: Path, settings: DataSettings, progress: bool) -> dict[str, np.ndarray]:
    """Read, split and vectorize the archive; returns the arrays to cache (without the key)."""
    reviews = read_reviews(archive, progress)
    (train_texts, train_labels), (test_texts, test_labels) = reviews["train"], reviews["test"]
    idx = split_indices(len(train_labels), len(test_labels), settings)
    texts = {
        "train": [train_texts[i] for i in idx.train],
        "val": [train_texts[i] for i in idx.val],
        "test": [test_texts[i] for i in idx.test],
    }
    encoded, actual_vocab_size = _vectorize(texts, settings.vocab_size, settings.sequence_length, progress)
    return {
        **{f"x_{split}": x for split, x in encoded.items()},
        "y_train": train_labels[idx.train],
        "y_val": train_labels[idx.val],
        "y_test": test_labels[idx.test],
        "vocab_size": np.array(actual_vocab_size),
    }


def load(settings: DataSettings, progress: bool) -> Dataset:
    """Load IMDB from `settings.data_dir` (downloading a missing archive), cached in `settings.cache_dir`."""
    if settings.vocab_size < 3 or settings.sequence_length < 1:
        raise DataError(
            f"dataset.vocab_size={settings.vocab_size} / dataset.sequence_length={settings.sequence_length} are "
            "invalid: the vocabulary needs at least 3 entries (padding, OOV and one word) and sequences at least "
            "1 token"
        )
    archive, digest = ensure_file(
        remote_file(),
        settings.data_dir,
        download=settings.download,
        verify=settings.verify_checksums,
        progress=progress,
    )
    key = cache_key(settings, digest)
    cache_file = settings.cache_dir / f"imdb-{key[:24]}.npz"
    arrays = _read_cache(cache_file, key, settings.sequence_length, progress)
    if arrays is None:
        arrays = _build(archive, settings, progress)
        note(progress, f"imdb: writing the cache file {cache_file}")
        try:
            write_arrays(cache_file, {**arrays, "key": np.array(key)})
        except OSError as exc:
            # The arrays are fine; only the next run pays for the missing cache, so warn instead of failing.
            warnings.warn(
                f"cannot write the IMDB cache {cache_file} ({exc}); set dataset.cache_dir (or $XENT_CACHE_DIR) "
                "to a writable folder to avoid re-vectorizing next time",
                stacklevel=2,
            )
    return Dataset(
        name="imdb",
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_val=arrays["x_val"],
        y_val=arrays["y_val"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        num_classes=NUM_CLASSES,
        input_kind=INPUT_KIND,
        vocab_size=int(arrays["vocab_size"]),
        checksums={ARCHIVE: digest},
    )
