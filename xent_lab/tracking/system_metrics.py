"""MLflow's system metrics for a run (`tracking.system_metrics=true`): CPU, memory, disk, network, and the
GPU through `nvidia-ml-py` when it is installed and a GPU is visible, logged as `system/...`.

MLflow samples every 10 s by default ($MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL changes it). It needs
`psutil` (`config.validate` says so when it is missing), which is not a dependency of the project since the
metrics are off by default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from xent_lab.tracking.runlog import RunLogger

# Its INFO lines (started, stopping, no GPU) would sit between the epoch lines.
_MLFLOW_LOGGER = "mlflow.system_metrics"


@contextmanager
def monitored(run: RunLogger, uri: str, enabled: bool) -> Iterator[None]:
    """Sample the machine into `run` for the block, if `enabled`."""
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logger = logging.getLogger(_MLFLOW_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(run.run_id, tracking_uri=uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        logger.setLevel(level)
