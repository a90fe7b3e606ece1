"""Datasets for the experiments: MNIST and IMDB, from their original files, split, checked and cached.

settings = DataSettings.from_mapping({"name": "mnist", "cache_dir": "~/.cache/xent_lab/cache",
                                      "val_size": 5000, "val_seed": 0})
ds = load_dataset(settings)
"""

from xent_lab.data.dataset import Dataset
from xent_lab.data.errors import DataError
from xent_lab.data.loader import FACTS, DatasetFacts, load_dataset
from xent_lab.data.settings import DataSettings

__all__ = ["FACTS", "DataError", "DataSettings", "Dataset", "DatasetFacts", "load_dataset"]
