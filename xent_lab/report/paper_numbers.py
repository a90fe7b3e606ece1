"""The numbers of Mukhoti et al. 2020 that a report quotes beside ours, as read in the authors' repository.

Every value below is copied from the file and commit named with it, and nowhere else (tests/test_report_layout.py
checks a few of them against the quoted text). Columns are keyed by our loss presets (`conf/loss/`) where we train
the same loss.
"""

from __future__ import annotations

from typing import NamedTuple

REPOSITORY = "https://github.com/torrvision/focal_calibration"


class Source(NamedTuple):
    """Where a quoted number was read: a file of the authors' repository at one commit."""

    path: str
    commit: str
    branch: str

    def cite(self) -> str:
        return f"`{self.path}` at commit `{self.commit[:7]}` ({self.branch} branch) of {REPOSITORY}"


CIFAR_SOURCE = Source("README.md", "475422a6754e20d25216158a874749c33e826e21", "main")
NEWSGROUPS_SOURCE = Source("20newsgroup_eval_error_bars.sh", "36c1c1421426a3e6db5f2b9c7afe059010441c06", "nlp")
SST_SOURCE = Source("sst_eval_error_bars.sh", "36c1c1421426a3e6db5f2b9c7afe059010441c06", "nlp")

# The README's column headings, in its order, and our preset of the same loss.
CIFAR_LOSSES = (
    ("Cross-Entropy", "cce"),
    ("Brier Loss", "brier"),
    ("MMCE", "mmce"),
    ("LS-0.05", "cce_smoothed05"),
    ("FL-3", "focal_gamma3"),
    ("FLSD-53", "focal_flsd53"),
)


class Calibrated(NamedTuple):
    """One cell of the README's ECE table: ECE % before temperature scaling, after it, and the T used."""

    ece: float
    ece_ts: float
    temperature: float


# "The following table shows the CIFAR-10 test set classification error %." (per architecture, per loss)
CIFAR_ERROR = {
    "ResNet-50": (4.95, 5.0, 4.99, 5.29, 5.25, 4.98),
    "ResNet-110": (4.89, 5.48, 5.4, 5.52, 5.08, 5.42),
    "Wide-ResNet-26-10": (3.86, 4.08, 3.91, 4.2, 4.13, 4.01),
    "DenseNet-121": (5.0, 5.11, 5.41, 5.09, 5.33, 5.46),
}
# "The following table shows the CIFAR-10 test set ECE % for the same models." Cells "x | y (T)": ECE, ECE (T).
CIFAR_ECE = {
    "ResNet-50": (
        Calibrated(4.35, 1.35, 2.5),
        Calibrated(1.82, 1.08, 1.1),
        Calibrated(4.56, 1.19, 2.6),
        Calibrated(2.96, 1.67, 0.9),
        Calibrated(1.48, 1.42, 1.1),
        Calibrated(1.55, 0.95, 1.1),
    ),
    "ResNet-110": (
        Calibrated(4.41, 1.09, 2.8),
        Calibrated(2.56, 1.25, 1.2),
        Calibrated(5.08, 1.42, 2.8),
        Calibrated(2.09, 2.09, 1.0),
        Calibrated(1.55, 1.02, 1.1),
        Calibrated(1.87, 1.07, 1.1),
    ),
    "Wide-ResNet-26-10": (
        Calibrated(3.23, 0.92, 2.2),
        Calibrated(1.25, 1.25, 1.0),
        Calibrated(3.29, 0.86, 2.2),
        Calibrated(4.26, 1.84, 0.8),
        Calibrated(1.69, 0.97, 0.9),
        Calibrated(1.56, 0.84, 0.9),
    ),
    "DenseNet-121": (
        Calibrated(4.52, 1.31, 2.4),
        Calibrated(1.53, 1.53, 1.0),
        Calibrated(5.1, 1.61, 2.5),
        Calibrated(1.88, 1.82, 0.9),
        Calibrated(1.32, 1.26, 0.9),
        Calibrated(1.22, 1.22, 1.0),
    ),
}


class TextTemperature(NamedTuple):
    """One line of an evaluation script: the model it loads (as the script names it), our preset of that loss
    (None: we do not train it), and its `--temp`."""

    model: str
    preset: str | None
    temperature: float


# 20 Newsgroups, global-pooling CNN: each `--saved_model_names ...` line's `--temp` (commented-out lines left out).
NEWSGROUPS_TEMPERATURES = (
    TextTemperature("mmce_weighted_lamda_2.0", None, 2.2),
    TextTemperature("cross_entropy", "cce", 3.4),
    TextTemperature("brier_score", "brier", 2.3),
    TextTemperature("cross_entropy_smoothed_smoothing_0.05", "cce_smoothed05", 1.1),
    TextTemperature("focal_loss_gamma_1.0", "focal_gamma1", 2.6),
    TextTemperature("focal_loss_gamma_2.0", "focal", 1.6),
    TextTemperature("focal_loss_gamma_3.0", "focal_gamma3", 1.5),
    TextTemperature("focal_loss_scheduled_gamma_5.0_3.0_1.0", None, 1.7),
    TextTemperature("focal_loss_scheduled_gamma_5.0_3.0_2.0", None, 1.8),
    TextTemperature("focal_loss_adaptive_gamma_3.0", "focal_flsd53", 1.5),
    TextTemperature("focal_loss_adaptive_gamma_2.0", None, 2.0),
)
# SST Binary, Tree-LSTM: each `--loss ...` line's `--temp` (commented-out lines left out).
SST_TEMPERATURES = (
    TextTemperature("cross_entropy", "cce", 1.8),
    TextTemperature("brier_score", "brier", 2.5),
    TextTemperature("focal_loss --gamma 1.0", "focal_gamma1", 1.6),
    TextTemperature("focal_loss --gamma 2.0", "focal", 1.0),
    TextTemperature("focal_loss --gamma 3.0", "focal_gamma3", 0.5),
    TextTemperature("focal_loss --gamma-schedule 1 --gamma 5.0 --gamma2 3.0 --gamma3 1.0", None, 1.4),
    TextTemperature("focal_loss --gamma-schedule 1 --gamma 5.0 --gamma2 3.0 --gamma3 2.0", None, 0.9),
    TextTemperature("focal_loss_adaptive --gamma 2.0", None, 2.0),
    TextTemperature("focal_loss_adaptive --gamma 3.0", "focal_flsd53", 0.7),
    TextTemperature("mmce_weighted --lamda 2.0", None, 1.5),
)

# Their settings, read from the same repository, beside the rows of `paper.SETTINGS`.
THEIR_SETTINGS = {
    "data": "CIFAR-10 (README table); 20 Newsgroups and SST Binary (text scripts)",
    "model": "ResNet-50/110, Wide-ResNet-26-10, DenseNet-121; global-pooling CNN (20 Newsgroups); Tree-LSTM (SST)",
    "epochs": "350 (CIFAR-10, `train.py` default); 50 (20 Newsgroups) and 25 (SST), the `*_train.sh` scripts",
    "optimiser": "SGD, momentum 0.9, weight decay 5e-4 (CIFAR-10, `train.py` defaults)",
    "learning rate": "0.1, divided by 10 at epochs 150 and 250 (CIFAR-10, `train.py` defaults)",
    "checkpoint evaluated": "last epoch (CIFAR-10); best validation accuracy (text: `*_best.model`, `--max-dev-epoch`)",
    "ECE bins": "15 (`evaluate.py`'s `num_bins` default)",
    "MMCE": "the weighted estimator, `mmce_weighted`, λ = 2 or 8 (text scripts)",
}
