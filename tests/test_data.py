"""Tests of xent_lab.data: tiny files of the real formats written here, a local HTTP server, and the real data.

No mocks: the unit tests build small but genuine IDX gzip files and aclImdb-shaped archives, and the
download tests talk to an http.server on 127.0.0.1. The integration tests at the end read ../shared/data
(or $XENT_DATA_DIR).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import random
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.helpers.e2e import composed
from xent_lab.data import DataError, Dataset, DataSettings, fetch, imdb, load_dataset, mnist
from xent_lab.data.fetch import RemoteFile
from xent_lab.data.splits import long_tail_indices

# ----------------------------------------------------------------------------------------------- helpers

N_TRAIN, N_TEST = 20, 10


def idx_bytes(array: np.ndarray, *, header_shape: tuple[int, ...] | None = None) -> bytes:
    """An uncompressed IDX file of unsigned bytes; `header_shape` lets a test lie about the contents."""
    shape = header_shape or array.shape
    magic = 0x0800 | len(shape)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)


def tiny_images(n: int) -> np.ndarray:
    """Image i is filled with 13 * i, so a test can read back which sample it got; one pixel is 255."""
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None] * 13, 28, axis=1).repeat(28, axis=2)
    images[:, 27, 27] = 255
    return images


def sample_ids(x: np.ndarray) -> np.ndarray:
    """Invert `tiny_images` on loaded float images."""
    return np.rint(x[:, 0, 0, 0] * 255 / 13).astype(int)


def write_tiny_mnist(data_dir: Path) -> None:
    """20 train / 10 test images; train label = id % 10, test label = (id + 3) % 10."""
    files = {
        "train-images-idx3-ubyte.gz": tiny_images(N_TRAIN),
        "train-labels-idx1-ubyte.gz": np.arange(N_TRAIN) % 10,
        "t10k-images-idx3-ubyte.gz": tiny_images(N_TEST),
        "t10k-labels-idx1-ubyte.gz": (np.arange(N_TEST) + 3) % 10,
    }
    for name, array in files.items():
        write_gz(data_dir / "mnist" / name, idx_bytes(array))


# Tiny IMDB: every training review starts with a word of its own, so a review whose first id is the OOV id
# (1) was not seen by the vectorizer. Positive reviews have 3 tokens once "<br />" is stripped (5 if it were
# kept as "br"), negative ones 4, so the token count tells a review's label.
TRAIN_POS, TRAIN_NEG, TEST_POS, TEST_NEG = 12, 8, 5, 5
TINY_VAL = 4


def tiny_imdb_members() -> dict[str, str]:
    members = {f"aclImdb/train/pos/{i}_9.txt": f"train{i}pos great <br /><br /> film" for i in range(TRAIN_POS)}
    members |= {f"aclImdb/train/neg/{i}_2.txt": f"train{i}neg awful boring plot" for i in range(TRAIN_NEG)}
    # "zyzzyva" only occurs in the test split: it must map to OOV.
    members |= {f"aclImdb/test/pos/{i}_8.txt": "zyzzyva great film" for i in range(TEST_POS)}
    members |= {f"aclImdb/test/neg/{i}_1.txt": "zyzzyva awful boring plot" for i in range(TEST_NEG)}
    # Everything below must be ignored, as in the original archive.
    members |= {f"aclImdb/train/unsup/{i}_0.txt": "unlabelled words here" for i in range(6)}
    members |= {
        "aclImdb/README": "readme",
        "aclImdb/imdb.vocab": "the\nand\n",
        "aclImdb/train/urls_pos.txt": "http://www.imdb.com/title/tt0000000/usercomments\n",
        "aclImdb/train/labeledBow.feat": "0:9 1:1\n",
    }
    return members


def write_tar_gz(path: Path, members: dict[str, str], *, order_seed: int = 0) -> None:
    """Pack `members` (name -> text) in a shuffled order, like an archive packed on another machine."""
    names = sorted(members)
    random.Random(order_seed).shuffle(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = members[name].encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def tiny_imdb_settings(data_dir: Path, cache_dir: Path, **overrides) -> DataSettings:
    settings = DataSettings(
        "imdb",
        data_dir,
        cache_dir,
        val_size=TINY_VAL,
        val_seed=0,
        vocab_size=100,
        sequence_length=6,
        verify_checksums=False,
        download=False,
    )
    return dataclasses.replace(settings, **overrides)


def load_tiny_imdb(data_dir: Path, cache_dir: Path, progress: bool = False, **overrides) -> Dataset:
    return load_dataset(tiny_imdb_settings(data_dir, cache_dir, **overrides), progress)


# What a load prints when it misses the cache and reads the archive (with progress on): a build.
BUILDING = "imdb: reading reviews from"


def load_noting(
    capsys: pytest.CaptureFixture[str], data_dir: Path, cache_dir: Path, **overrides
) -> tuple[Dataset, str]:
    """load_tiny_imdb with progress on; the dataset and what the load printed (BUILDING in it: a cache miss)."""
    capsys.readouterr()
    dataset = load_tiny_imdb(data_dir, cache_dir, progress=True, **overrides)
    return dataset, capsys.readouterr().err


def load_tiny_mnist(data_dir: Path, **overrides) -> Dataset:
    settings = DataSettings(
        "mnist", data_dir, data_dir / "unused-cache", val_size=5, val_seed=0, verify_checksums=False, download=False
    )
    return load_dataset(dataclasses.replace(settings, **overrides), progress=False)


def load_real_mnist(data_dir: Path, cache_dir: Path, **overrides) -> Dataset:
    return load_dataset(DataSettings("mnist", data_dir, cache_dir, val_size=5000, val_seed=0, **overrides), False)


def assert_same_arrays(a: Dataset, b: Dataset) -> None:
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, split), getattr(b, split))


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def files_under(folder: Path) -> dict[str, int]:
    """Relative path -> mtime_ns of every file under `folder`."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting fails at once, like a machine offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    write_tiny_mnist(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def tiny_imdb(tmp_path: Path) -> Path:
    write_tar_gz(tmp_path / "data" / imdb.ARCHIVE, tiny_imdb_members())
    return tmp_path / "data"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served by a real HTTP server on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ MNIST (tiny)


def test_mnist_shapes_dtypes_range_and_labels(tiny_mnist: Path) -> None:
    ds = load_tiny_mnist(tiny_mnist)
    assert (ds.name, ds.num_classes, ds.input_kind, ds.vocab_size) == ("mnist", 10, "image", None)
    for x, y, n in ((ds.x_train, ds.y_train, 15), (ds.x_val, ds.y_val, 5), (ds.x_test, ds.y_test, N_TEST)):
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() == 1.0
    # Each image still carries its own label after the split.
    np.testing.assert_array_equal(ds.y_train, sample_ids(ds.x_train) % 10)
    np.testing.assert_array_equal(ds.y_val, sample_ids(ds.x_val) % 10)
    np.testing.assert_array_equal(ds.y_test, (sample_ids(ds.x_test) + 3) % 10)
    assert ds.checksums == {name: sha256_bytes((tiny_mnist / "mnist" / name).read_bytes()) for name in mnist.SHA256}


def test_validation_split_is_deterministic_disjoint_and_seeded(tiny_mnist: Path) -> None:
    first, again = load_tiny_mnist(tiny_mnist), load_tiny_mnist(tiny_mnist)
    train, val = sample_ids(first.x_train), sample_ids(first.x_val)
    assert set(train).isdisjoint(val) and sorted([*train, *val]) == list(range(N_TRAIN))
    np.testing.assert_array_equal(val, sample_ids(again.x_val))
    np.testing.assert_array_equal(train, sample_ids(again.x_train))
    np.testing.assert_array_equal(val, np.random.default_rng(0).permutation(N_TRAIN)[:5])
    other_seed = load_tiny_mnist(tiny_mnist, val_seed=1)
    assert set(sample_ids(other_seed.x_val)) != set(val)
    # The official test split is never touched by the validation split.
    np.testing.assert_array_equal(sample_ids(first.x_test), np.arange(N_TEST))


def test_limits_take_seeded_random_subsets(tiny_mnist: Path) -> None:
    full = load_tiny_mnist(tiny_mnist)
    limited = load_tiny_mnist(tiny_mnist, limit_train=6, limit_test=4)
    assert limited.x_train.shape[0] == 6 and limited.x_test.shape[0] == 4
    # Limits apply after the split: validation is unchanged and training is a subset of the full one.
    np.testing.assert_array_equal(sample_ids(limited.x_val), sample_ids(full.x_val))
    np.testing.assert_array_equal(sample_ids(limited.x_train), sample_ids(full.x_train)[:6])
    test_ids = sample_ids(limited.x_test)
    assert list(test_ids) == sorted(test_ids) and list(test_ids) != [0, 1, 2, 3]  # random, in file order
    # A limit above what is available keeps everything.
    assert load_tiny_mnist(tiny_mnist, limit_train=1000).x_train.shape[0] == 15


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"val_size": N_TRAIN}, "dataset.val_size"),
        ({"val_size": -1}, "dataset.val_size"),
        ({"limit_train": 0}, "dataset.limit.train"),
        ({"limit_test": 2.5}, "dataset.limit.test"),
    ],
)
def test_invalid_split_settings_are_data_errors(tiny_mnist: Path, overrides: dict, key: str) -> None:
    with pytest.raises(DataError, match=key):
        load_tiny_mnist(tiny_mnist, **overrides)


def test_unknown_dataset_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'cifar'.*known datasets: imdb, mnist"):
        load_dataset(DataSettings("cifar", tmp_path, tmp_path, val_size=1, val_seed=0))


def _truncated_images(path: Path) -> None:
    write_gz(path, idx_bytes(tiny_images(N_TRAIN - 1), header_shape=(N_TRAIN, 28, 28)))


def _wrong_magic(path: Path) -> None:
    write_gz(path, idx_bytes(np.arange(N_TRAIN) % 10))  # a labels file where the images belong


def _not_gzip(path: Path) -> None:
    path.write_bytes(idx_bytes(tiny_images(N_TRAIN)))


def _cut_gzip_stream(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _trailing_bytes(path: Path) -> None:
    write_gz(path, idx_bytes(tiny_images(N_TRAIN)) + b"\0" * 7)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncated_images, "truncated or damaged"),
        (_wrong_magic, "magic number 2051"),
        (_not_gzip, "cannot decompress"),
        (_cut_gzip_stream, "cannot decompress"),
        (_trailing_bytes, "truncated or damaged"),
    ],
)
def test_damaged_idx_file_is_a_data_error_naming_it(tiny_mnist: Path, damage, message: str) -> None:
    path = tiny_mnist / "mnist" / "train-images-idx3-ubyte.gz"
    damage(path)
    with pytest.raises(DataError, match=message) as info:
        load_tiny_mnist(tiny_mnist)
    assert str(path) in str(info.value)


def test_images_and_labels_of_different_lengths_are_rejected(tiny_mnist: Path) -> None:
    write_gz(tiny_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.arange(N_TEST - 1) % 10))
    with pytest.raises(DataError, match=f"{N_TEST} images but .*t10k-labels-idx1-ubyte.gz has {N_TEST - 1} "):
        load_tiny_mnist(tiny_mnist)


def test_unknown_checksum_is_rejected_unless_verification_is_off(tiny_mnist: Path) -> None:
    with pytest.raises(DataError) as info:
        load_tiny_mnist(tiny_mnist, verify_checksums=True)
    message = str(info.value)
    assert "checksum mismatch" in message and "train-images-idx3-ubyte.gz" in message
    assert mnist.SHA256["train-images-idx3-ubyte.gz"] in message  # the expected digest
    assert "delete it to re-download" in message and "dataset.verify_checksums=false" in message
    assert load_tiny_mnist(tiny_mnist, verify_checksums=False).x_train.shape[0] == 15


def test_missing_file_without_download_says_where_and_how(tiny_mnist: Path) -> None:
    (tiny_mnist / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_tiny_mnist(tiny_mnist, download=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(tiny_mnist / "mnist") in message
    assert mnist.MIRRORS[0] + "t10k-images-idx3-ubyte.gz" in message
    assert "XENT_DATA_DIR=" in message and "dataset.data_dir=" in message and "dataset.download=false" in message


def test_missing_file_offline_names_every_url_tried(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = (closed_port_url(), closed_port_url())
    monkeypatch.setattr(mnist, "MIRRORS", dead)
    (tiny_mnist / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_tiny_mnist(tiny_mnist, download=True)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz" in message and str(tiny_mnist / "mnist") in message
    assert all(url + "train-labels-idx1-ubyte.gz" in message for url in dead)
    assert "XENT_DATA_DIR=" in message
    assert sorted(files_under(tiny_mnist / "mnist")) == sorted(set(mnist.SHA256) - {"train-labels-idx1-ubyte.gz"})
    # Folders created for a download that failed are removed again.
    with pytest.raises(DataError, match="downloading it failed"):
        load_tiny_mnist(tmp_path / "absent" / "data", download=True)
    assert not (tmp_path / "absent").exists()


def test_missing_mnist_is_downloaded_from_the_next_mirror(
    tiny_mnist: Path, tmp_path: Path, http_root: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base_url = http_root
    write_tiny_mnist(root)
    monkeypatch.setattr(mnist, "MIRRORS", (closed_port_url(), base_url + "mnist/"))
    empty = tmp_path / "empty"
    downloaded = load_tiny_mnist(empty, download=True)
    assert sorted(files_under(empty / "mnist")) == sorted(mnist.SHA256)
    assert {file_mode(p) for p in (empty / "mnist").iterdir()} == {0o644}  # readable to all in a shared folder
    reference = load_tiny_mnist(tiny_mnist)
    np.testing.assert_array_equal(downloaded.x_train, reference.x_train)
    assert downloaded.checksums == reference.checksums


# ----------------------------------------------------------------------------------- fetch and checksums


def test_download_verifies_the_checksum_and_reports_progress(
    tmp_path: Path, http_root: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, base_url = http_root
    payload = os.urandom(3000)
    (root / "blob.bin").write_bytes(payload)
    spec = RemoteFile("sub/blob.bin", (base_url + "blob.bin",), {sha256_bytes(payload): "test blob"})
    path, digest = fetch.ensure_file(spec, tmp_path / "data", download=True, verify=True, progress=True)
    assert path == tmp_path / "data" / "sub" / "blob.bin" and path.read_bytes() == payload
    assert digest == sha256_bytes(payload)
    assert list((tmp_path / "data" / "sub").iterdir()) == [path]  # no temp file left behind
    assert file_mode(path) == 0o644
    assert f"downloading {base_url}blob.bin" in capsys.readouterr().err


def test_download_with_wrong_checksum_is_rejected_and_leaves_nothing(
    tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, base_url = http_root
    (root / "blob.bin").write_bytes(b"not what was published")
    expected = sha256_bytes(b"the published file")
    spec = RemoteFile("blob.bin", (base_url + "blob.bin", base_url + "missing.bin"), {expected: "release"})
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(DataError) as info:
        fetch.ensure_file(spec, data_dir, download=True, verify=True, progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message and expected in message
    assert sha256_bytes(b"not what was published") in message  # what was received
    assert "missing.bin (HTTP Error 404" in message  # every URL tried is reported
    assert list(data_dir.iterdir()) == []


def test_download_into_an_unusable_folder_says_so(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    spec = RemoteFile("sub/blob.bin", (closed_port_url(),), {})
    with pytest.raises(DataError, match=r"blob.bin is not in .* and cannot be downloaded there \("):
        fetch.ensure_file(spec, not_a_folder, download=True, verify=True, progress=False)
    assert not_a_folder.read_text() == ""


def test_known_variants_are_accepted_and_hashing_is_memoized(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"variant b")
    known = {sha256_bytes(b"variant a"): "release a", sha256_bytes(b"variant b"): "release b"}
    spec = RemoteFile("file.bin", ("http://unused/",), known)
    hits = fetch._sha256_memo.cache_info().hits
    _, digest = fetch.ensure_file(spec, tmp_path, download=False, verify=True, progress=False)
    assert digest == sha256_bytes(b"variant b")
    assert fetch.sha256_of(path) == sha256_bytes(b"variant b")
    assert fetch._sha256_memo.cache_info().hits == hits + 1  # the second call did not read the file again
    path.write_bytes(b"variant c, longer")  # a replaced file is hashed again
    assert fetch.sha256_of(path) == sha256_bytes(b"variant c, longer")


# ---------------------------------------------------------------------------------------------- settings

REQUIRED = {"name": "mnist", "cache_dir": "/cache", "val_size": 10, "val_seed": 3}
# One change of each setting that shapes the cached IMDB arrays (all of DataSettings.shaping but two).
KEY_CHANGES = {"val_size": 3, "val_seed": 1, "limit_train": 5, "limit_test": 4, "vocab_size": 50, "sequence_length": 8}


def harness_settings(*overrides: str) -> DataSettings:
    """What the harness builds from the composed config."""
    cfg = composed(*overrides)
    return DataSettings.from_mapping(OmegaConf.to_container(cfg.dataset, resolve=True))


def test_config_files_map_onto_the_settings_and_their_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XENT_CACHE_DIR", str(tmp_path / "cache"))
    # conf/dataset/imdb.yaml spells out vocab_size and sequence_length: they must be DataSettings' defaults.
    for name in ("mnist", "imdb"):
        expected = DataSettings(name, tmp_path / "data", tmp_path / "cache", val_size=5000, val_seed=0)
        assert harness_settings(f"dataset={name}") == expected
    assert harness_settings("experiment=mnist_imbalance").imbalance == 100
    imdb_study = harness_settings("experiment=imdb_losses", "dataset.limit.test=7", "dataset.data_dir='~/d'")
    assert (imdb_study.name, imdb_study.limit_test, imdb_study.data_dir) == ("imdb", 7, Path("~/d").expanduser())


def test_from_mapping_defaults_and_nested_limits() -> None:
    settings = DataSettings.from_mapping({**REQUIRED, "data_dir": "/raw"})
    assert settings == DataSettings(
        "mnist",
        Path("/raw"),
        Path("/cache"),
        val_size=10,
        val_seed=3,
        limit_train=None,
        limit_test=None,
        imbalance=None,
        vocab_size=20000,
        sequence_length=256,
        download=True,
        verify_checksums=True,
    )
    limited = DataSettings.from_mapping({**REQUIRED, "limit": {"train": 5, "test": None}, "imbalance": 10})
    assert (limited.limit_train, limited.limit_test, limited.imbalance) == (5, None, 10)


def test_from_mapping_resolves_data_dir_and_expands_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENT_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def data_dir(**configured: str | None) -> Path:
        return DataSettings.from_mapping(REQUIRED | configured).data_dir

    assert data_dir(data_dir=str(tmp_path / "configured")) == tmp_path / "configured"
    assert data_dir(data_dir="~/data") == tmp_path / "home" / "data"
    assert data_dir(data_dir=None) == data_dir() == tmp_path / "from-env"
    monkeypatch.delenv("XENT_DATA_DIR")
    assert data_dir(data_dir=None) == tmp_path / "home" / ".cache" / "xent_lab" / "data"
    assert DataSettings.from_mapping(REQUIRED | {"cache_dir": "~/c"}).cache_dir == tmp_path / "home" / "c"


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        (REQUIRED | {"limt": {"train": 5}}, "dataset.limt.train"),
        (REQUIRED | {"limit": {"tain": 5}}, "dataset.limit.tain"),
        (REQUIRED | {"limit_train": 5}, "dataset.limit_train"),  # the field's name is not a config key
        (REQUIRED | {"vocab": 5, "seed": 1}, "dataset.seed, dataset.vocab"),
        ({key: value for key, value in REQUIRED.items() if key != "val_seed"}, "dataset.val_seed missing"),
        (REQUIRED | {"cache_dir": None}, "dataset.cache_dir missing or null"),
    ],
)
def test_from_mapping_rejects_unknown_and_missing_keys(mapping: dict, named: str) -> None:
    with pytest.raises(DataError, match=named):
        DataSettings.from_mapping(mapping)


def test_shaping_settings_are_all_but_where_and_how_to_fetch(tmp_path: Path) -> None:
    settings = tiny_imdb_settings(tmp_path, tmp_path)
    assert settings.shaping() == {
        "name": "imdb",
        "val_size": TINY_VAL,
        "val_seed": 0,
        "limit_train": None,
        "limit_test": None,
        "imbalance": None,
        "vocab_size": 100,
        "sequence_length": 6,
    }
    assert set(KEY_CHANGES) == set(settings.shaping()) - {"name", "imbalance"}


def test_imdb_cache_key_changes_with_each_shaping_setting_only(tmp_path: Path) -> None:
    base = tiny_imdb_settings(tmp_path / "data", tmp_path / "cache")
    key = imdb.cache_key(base, "digest")
    changed = {imdb.cache_key(dataclasses.replace(base, **{f: v}), "digest") for f, v in KEY_CHANGES.items()}
    assert len(changed) == len(KEY_CHANGES) and key not in changed
    assert imdb.cache_key(base, "other digest") != key  # a replaced archive is a cache miss
    # Where the files are, how they are fetched and the imbalance (applied after the cache) leave it alone.
    same = dict(data_dir=tmp_path / "x", cache_dir=tmp_path / "y", download=True, verify_checksums=True, imbalance=5)
    assert imdb.cache_key(dataclasses.replace(base, **same), "digest") == key


# ------------------------------------------------------------------------------------------- IMDB (tiny)


def test_imdb_tiny_archive_vectorized_on_train_only(tiny_imdb: Path, tmp_path: Path) -> None:
    before = files_under(tiny_imdb)
    ds = load_tiny_imdb(tiny_imdb, tmp_path / "cache")
    assert (ds.name, ds.num_classes, ds.input_kind) == ("imdb", 2, "text")
    n_train = TRAIN_POS + TRAIN_NEG - TINY_VAL  # train/unsup is not counted
    for x, y, n in ((ds.x_train, ds.y_train, n_train), (ds.x_val, ds.y_val, TINY_VAL), (ds.x_test, ds.y_test, 10)):
        assert x.shape == (n, 6) and x.dtype == np.int32 and y.dtype == np.int64
        assert x.min() >= 0 and x.max() < ds.vocab_size
        # Labels match their texts (pos=1 has 3 tokens, neg=0 has 4), so "<br />" was stripped.
        np.testing.assert_array_equal(np.count_nonzero(x, axis=1), 4 - y)
    assert ds.y_train.sum() + ds.y_val.sum() == TRAIN_POS and ds.y_test.sum() == TEST_POS
    # Adapted on the training part only: validation-only and test-only words are OOV (id 1).
    assert (ds.x_train[:, 0] > 1).all() and (ds.x_val[:, 0] == 1).all() and (ds.x_test[:, 0] == 1).all()
    assert (ds.x_test[:, 1] > 1).all()  # "great"/"awful" were seen in training
    # Padding, OOV, one own word per training review and great/film/awful/boring/plot.
    assert ds.vocab_size == 2 + n_train + 5
    assert ds.checksums == {imdb.ARCHIVE: sha256_bytes((tiny_imdb / imdb.ARCHIVE).read_bytes())}
    assert files_under(tiny_imdb) == before  # the data folder was only read


def test_imdb_order_of_archive_members_does_not_matter(tmp_path: Path) -> None:
    loaded = []
    for seed in (1, 2):
        write_tar_gz(tmp_path / f"d{seed}" / imdb.ARCHIVE, tiny_imdb_members(), order_seed=seed)
        loaded.append(load_tiny_imdb(tmp_path / f"d{seed}", tmp_path / "cache"))
    assert loaded[0].checksums != loaded[1].checksums  # different archives...
    assert_same_arrays(*loaded)  # ...same data


def test_imdb_cache_hit_skips_vectorizing(tiny_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    first, printed = load_noting(capsys, tiny_imdb, cache)
    assert BUILDING in printed
    written = files_under(cache)
    key = imdb.cache_key(tiny_imdb_settings(tiny_imdb, cache), first.checksums[imdb.ARCHIVE])
    assert list(written) == [f"imdb-{key[:24]}.npz"]
    assert file_mode(cache / f"imdb-{key[:24]}.npz") == 0o644
    second, printed = load_noting(capsys, tiny_imdb, cache)
    assert BUILDING not in printed and files_under(cache) == written
    assert "using cached arrays" in printed
    assert_same_arrays(first, second)
    assert second.vocab_size == first.vocab_size and second.checksums == first.checksums


@pytest.mark.parametrize(("field", "value"), KEY_CHANGES.items())
def test_imdb_cache_key_follows_the_settings(
    tiny_imdb: Path, tmp_path: Path, field: str, value: int, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    load_tiny_imdb(tiny_imdb, cache)
    changed, printed = load_noting(capsys, tiny_imdb, cache, **{field: value})
    assert BUILDING in printed and len(files_under(cache)) == 2
    # The arrays are those of the new settings, not the old cache file's.
    settings = tiny_imdb_settings(tiny_imdb, cache, **{field: value})
    n_train = TRAIN_POS + TRAIN_NEG - settings.val_size
    assert changed.x_train.shape == (min(n_train, settings.limit_train or n_train), settings.sequence_length)
    assert (len(changed.x_val), len(changed.x_test)) == (settings.val_size, settings.limit_test or TEST_POS + TEST_NEG)


def test_imdb_cache_is_shared_across_folders_and_imbalance_ratios(
    tiny_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    balanced = load_tiny_imdb(tiny_imdb, cache)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.replace(tiny_imdb / imdb.ARCHIVE, moved / imdb.ARCHIVE)
    written = files_under(cache)
    moved_back, printed = load_noting(capsys, moved, cache, download=True)
    assert_same_arrays(moved_back, balanced)
    thinned, printed_thinned = load_noting(capsys, moved, cache, imbalance=2)
    assert BUILDING not in printed + printed_thinned and files_under(cache) == written
    assert np.bincount(thinned.y_train).tolist() == [np.sum(balanced.y_train == 0), round(balanced.y_train.sum() / 2)]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong arrays", "other settings"])
def test_imdb_corrupt_cache_is_rebuilt(
    tiny_imdb: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    good = load_tiny_imdb(tiny_imdb, cache)
    (cache_file,) = cache.iterdir()
    if damage == "garbage":
        cache_file.write_bytes(b"this is not an npz file" * 10)
    elif damage == "truncated":
        cache_file.write_bytes(cache_file.read_bytes()[:-100])
    elif damage == "wrong arrays":
        np.savez(cache_file, x_train=np.zeros((2, 6), np.int32))
    else:  # a well-formed cache of another split, under this name: only its stored key tells them apart
        other = tmp_path / "other-cache"
        load_tiny_imdb(tiny_imdb, other, val_seed=1)
        os.replace(next(other.iterdir()), cache_file)
    rebuilt, printed = load_noting(capsys, tiny_imdb, cache)
    assert BUILDING in printed
    assert_same_arrays(rebuilt, good)
    _, printed = load_noting(capsys, tiny_imdb, cache)  # the rewritten file is a valid cache again
    assert BUILDING not in printed and "using cached arrays" in printed


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no reviews"])
def test_imdb_corrupt_archive_is_a_data_error(tiny_imdb: Path, tmp_path: Path, damage: str) -> None:
    archive = tiny_imdb / imdb.ARCHIVE
    if damage == "truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif damage == "garbage":
        archive.write_bytes(os.urandom(5000))
    else:
        write_tar_gz(archive, {"aclImdb/README": "only a readme"})
    with pytest.raises(DataError) as info:
        load_tiny_imdb(tiny_imdb, tmp_path / "cache")
    assert str(archive) in str(info.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_imdb_unwritable_cache_warns_and_still_loads(tiny_imdb: Path, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match="cannot write the IMDB cache .*dataset.cache_dir"):
        ds = load_tiny_imdb(tiny_imdb, not_a_folder)
    assert ds.x_train.shape == (TRAIN_POS + TRAIN_NEG - TINY_VAL, 6)


def test_imdb_archive_is_downloaded_when_missing(
    tmp_path: Path, http_root: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base_url = http_root
    write_tar_gz(root / imdb.ARCHIVE, tiny_imdb_members())
    monkeypatch.setattr(imdb, "URL", base_url + imdb.ARCHIVE)
    ds = load_tiny_imdb(tmp_path / "data", tmp_path / "cache", download=True)
    assert (tmp_path / "data" / imdb.ARCHIVE).read_bytes() == (root / imdb.ARCHIVE).read_bytes()
    assert ds.x_test.shape == (10, 6)


# ------------------------------------------------------------------------------ real data (integration)

# The MD5 sums published with MNIST; the sha256 table in xent_lab.data.mnist must describe the same files.
MNIST_PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@pytest.fixture(scope="module")
def real_data_dir() -> Path:
    configured = os.environ.get("XENT_DATA_DIR")
    data_dir = Path(configured) if configured else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (data_dir / "SHA256SUMS").is_file():
        pytest.fail(
            f"the real datasets are not in {data_dir} (no SHA256SUMS there): put the shared data folder "
            "beside the checkout (../shared/data) or set XENT_DATA_DIR=/path/to/data"
        )
    return data_dir


def test_checksum_tables_match_the_shared_sha256sums(real_data_dir: Path) -> None:
    listed = dict(line.split()[::-1] for line in (real_data_dir / "SHA256SUMS").read_text().splitlines() if line)
    assert {name: listed[f"mnist/{name}"] for name in mnist.SHA256} == mnist.SHA256
    assert listed[imdb.ARCHIVE] in imdb.SHA256
    assert "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe" in imdb.SHA256  # the original


@pytest.fixture(scope="module")
def real_mnist(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    """The balanced real MNIST and its cache folder, read once for the module's tests."""
    cache = tmp_path_factory.mktemp("mnist-cache")
    return load_real_mnist(real_data_dir, cache), cache


def test_real_mnist(real_data_dir: Path, real_mnist: tuple[Dataset, Path]) -> None:
    ds, cache = real_mnist
    assert ds.x_train.shape == (55000, 28, 28, 1) and ds.x_val.shape == (5000, 28, 28, 1)
    assert ds.x_test.shape == (10000, 28, 28, 1) and ds.x_train.dtype == np.float32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert set(np.unique(y)) == set(range(10))
    assert ds.checksums == mnist.SHA256
    for name, md5 in MNIST_PUBLISHED_MD5.items():
        assert hashlib.md5((real_data_dir / "mnist" / name).read_bytes()).hexdigest() == md5
    assert list(cache.iterdir()) == []  # MNIST needs no cache


@pytest.fixture(scope="module")
def real_imdb(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    # Reading the whole archive takes seconds: once per test session. Settings as the config group gives them.
    settings = DataSettings.from_mapping(
        {
            "name": "imdb",
            "data_dir": str(real_data_dir),
            "cache_dir": str(tmp_path_factory.mktemp("imdb-cache")),
            "val_size": 500,
            "val_seed": 0,
            "limit": {"train": 2000, "test": 1000},
            "vocab_size": 5000,
            "sequence_length": 128,
        }
    )
    return load_dataset(settings, progress=False)


def test_real_imdb_with_limits(real_imdb: Dataset) -> None:
    ds = real_imdb
    assert ds.x_train.shape == (2000, 128) and ds.x_val.shape == (500, 128) and ds.x_test.shape == (1000, 128)
    assert ds.x_train.dtype == np.int32 and ds.vocab_size == 5000
    assert ds.x_train.min() >= 0 and ds.x_test.max() < 5000
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert set(np.unique(y)) == {0, 1}  # the test limit is a random subset, not the first (all neg) files
        assert 0.4 < y.mean() < 0.6
    assert ds.checksums == {imdb.ARCHIVE: "35bd800949d44debc9bac42fc584c9780f73f47359c7189ff912b21b90ced937"}


# --------------------------------------------------------------------------- imbalance


def test_long_tail_keeps_a_geometric_fraction_of_each_class() -> None:
    labels = np.repeat(np.arange(10), 1000)
    kept = long_tail_indices(labels, 10, 100.0)
    counts = np.bincount(labels[kept], minlength=10)
    expected = [round(1000 * 100 ** (-k / 9)) for k in range(10)]
    assert counts.tolist() == expected and counts[0] == 1000 and counts[9] == 10
    assert np.all(np.diff(kept) > 0)  # the given order is kept


def test_long_tail_binary_keeps_one_over_ratio_of_positives() -> None:
    labels = np.array([0, 1] * 500)
    counts = np.bincount(labels[long_tail_indices(labels, 2, 4)], minlength=2)
    assert counts.tolist() == [500, 125]


@pytest.mark.parametrize("ratio", [0.5, -1, float("nan"), True, "10"])
def test_long_tail_rejects_bad_ratios(ratio) -> None:
    with pytest.raises(DataError, match="dataset.imbalance"):
        long_tail_indices(np.zeros(4, dtype=np.int64), 2, ratio)


def test_real_imbalanced_mnist_keeps_test_balanced(
    real_data_dir: Path, real_mnist: tuple[Dataset, Path], tmp_path: Path
) -> None:
    balanced, _ = real_mnist
    ds = load_real_mnist(real_data_dir, tmp_path, imbalance=100)
    train = np.bincount(ds.y_train, minlength=10)
    assert train[0] == np.sum(balanced.y_train == 0) and train[9] == round(np.sum(balanced.y_train == 9) / 100)
    assert np.all(np.diff(train / np.bincount(balanced.y_train)) < 0)  # fractions fall class by class
    assert 90 < train[0] / train[9] < 110 and np.bincount(ds.y_val)[9] < np.bincount(ds.y_val)[0] / 50
    np.testing.assert_array_equal(ds.y_test, balanced.y_test)
