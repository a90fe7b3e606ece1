"""The runtime of a training job: the device, the precision policy, the seeds and op determinism.

`configure_runtime` must run before TensorFlow creates any op: hiding the GPUs and turning on op
determinism only take effect then.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from omegaconf import DictConfig

from xent_lab.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu" or "gpu"
    device_name: str  # e.g. "CPU" or "GPU:0 NVIDIA H100 80GB HBM3"
    precision: str


def configure_runtime(trainer: DictConfig, seed: int) -> Runtime:
    """Select the device, the precision policy, the seeds and (optionally) op determinism."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if trainer.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    elif trainer.device == "gpu" and not gpus:
        raise ConfigError(
            "trainer.device=gpu but TensorFlow sees no GPU (is a CUDA build of TensorFlow installed, "
            "`pip install tensorflow[and-cuda]`, and is a driver visible, `nvidia-smi`?); "
            "use trainer.device=auto or trainer.device=cpu"
        )
    device = "gpu" if gpus else "cpu"
    if trainer.precision == "mixed_float16" and device != "gpu":
        raise ConfigError(
            "trainer.precision=mixed_float16 needs a GPU (float16 on a CPU is slower, not faster); "
            "use trainer.precision=float32, or mixed_bfloat16 (runs on a CPU)"
        )
    # A sweep runs its jobs one after another in one process: drop the previous job's graphs and layers.
    keras.backend.clear_session(free_memory=True)
    keras.mixed_precision.set_global_policy(trainer.precision)
    keras.utils.set_random_seed(seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        # The setting is process-wide: a job after a deterministic one in the same process (a sweep, the
        # in-process tests) must not inherit it. TensorFlow exports no public switch back.
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device_name = f"GPU:0 {details.get('device_name', '')}".strip()
    else:
        device_name = "CPU"
    return Runtime(device=device, device_name=device_name, precision=trainer.precision)
