"""Datasets for the experiments: MNIST and IMDB, from their original files, split, checked and cached.

    ds = load_dataset("mnist", resolve_data_dir(None), "~/.cache/xent_lab/cache", val_size=5000, val_seed=0)
"""

from xent_lab.data.dataset import Dataset
from xent_lab.data.errors import DataError
from xent_lab.data.loader import DATASETS, load_dataset, resolve_data_dir

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset", "resolve_data_dir"]
