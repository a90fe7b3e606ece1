"""MNIST from the four original IDX gzip files, parsed with NumPy."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from xent_lab.data.dataset import Dataset
from xent_lab.data.errors import DataError
from xent_lab.data.fetch import RemoteFile, ensure_file
from xent_lab.data.progress import note
from xent_lab.data.settings import DataSettings
from xent_lab.data.splits import split_indices

# Tried in order; read when loading (not at import), so tests can point it at a local server.
MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# sha256 of the original files. Their published MD5s, which the offline copies in ../shared/data match, are
# f68b3c2dcbeaaa9fbdd348bbdeb94873, d53e105ee54ea40749a09fcbcd1e9432, 9fb629c4189551a2d022fa330f9573f3 and
# ec29112dd5afa0611ce80d1b7f02629c, in this order.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
NUM_CLASSES = 10
INPUT_KIND = "image"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: unsigned bytes, 3 resp. 1 dimensions
IMAGE_SHAPE = (28, 28)
_FIX = "delete it to re-download, or replace it with a good copy"


def remote_file(name: str) -> RemoteFile:
    """The download and checksum facts of one MNIST file."""
    return RemoteFile(
        relpath=f"mnist/{name}",
        urls=tuple(mirror + name for mirror in MIRRORS),
        known_sha256={SHA256[name]: "original release"},
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes whose header must start with `magic`.

    Raises DataError naming the file when it is not gzip, is truncated, or its header does not match
    its contents.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot decompress {path}: {exc}; {_FIX}") from exc
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic number {magic} missing); {_FIX}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{path} is truncated or damaged: its header {dims} promises {expected} bytes, it has {len(data)}; {_FIX}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, IMAGES_MAGIC), read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{images_path} holds images of shape {images.shape[1:]}, not {IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path} has label {labels.max()}; MNIST labels are 0..{NUM_CLASSES - 1}")
    return images, labels.astype(np.int64)


def _scale(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) in [0, 1]."""
    scaled = images[..., np.newaxis].astype(np.float32)
    scaled /= 255  # in place: the full training set is 170 MB as float32
    return scaled


def load(settings: DataSettings, progress: bool) -> Dataset:
    """Load MNIST from `settings.data_dir`/mnist (downloading missing files), split and scaled; see `load_dataset`."""
    paths, checksums = {}, {}
    for name in SHA256:
        paths[name], checksums[name] = ensure_file(
            remote_file(name),
            settings.data_dir,
            download=settings.download,
            verify=settings.verify_checksums,
            progress=progress,
        )
    note(progress, f"mnist: reading the IDX files in {settings.data_dir / 'mnist'}")
    x_train, y_train = _read_pair(paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"])
    x_test, y_test = _read_pair(paths["t10k-images-idx3-ubyte.gz"], paths["t10k-labels-idx1-ubyte.gz"])
    idx = split_indices(len(y_train), len(y_test), settings)
    return Dataset(
        name="mnist",
        x_train=_scale(x_train[idx.train]),
        y_train=y_train[idx.train],
        x_val=_scale(x_train[idx.val]),
        y_val=y_train[idx.val],
        x_test=_scale(x_test[idx.test]),
        y_test=y_test[idx.test],
        num_classes=NUM_CLASSES,
        input_kind=INPUT_KIND,
        vocab_size=None,
        checksums=checksums,
    )
