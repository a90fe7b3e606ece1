"""A quiet start: TensorFlow's C++ start-up lines hidden, real warnings and errors kept.

TensorFlow 2.21 writes its start-up lines (the oneDNN notice, CUDA probing, CPU-feature hints) through
absl before absl's logging is initialised, and absl then ignores TF_CPP_MIN_LOG_LEVEL (abseil-cpp#1718):
the level that `xent_lab` sets does not reach them. So the import of TensorFlow and its GPU probe run
with file descriptor 2 (where C++ writes) sent to a temporary file, and the lines are then written to
the real stderr, less absl's INFO lines and the notices below. A user who sets TF_CPP_MIN_LOG_LEVEL
sees everything, unfiltered, and so does `trainer.verbose=3` on the command line.

TensorFlow reads its level once, when it loads, which is before Hydra has composed the config: so the
command line's own `trainer.verbose=` override is read here (a level set in a config file cannot act
that early, and then only Keras' progress follows it).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# Set by `xent_lab/__init__.py` when it chose TensorFlow's log level; inherited by a sweep's worker processes.
DEFAULTED_ENV = "XENT_TF_LOG_LEVEL_DEFAULTED"
# absl's prefix: severity, MMDD, time (before absl starts: 00:00:<epoch seconds>), thread id, file:line].
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ [^\]]*\] (.*)$")
# What Python itself writes to stderr (a warning, a traceback) is never part of an absl message.
_PYTHON_LINE = re.compile(r"^(Traceback |\S.*:\d+: \w+: )")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# Logged as errors or warnings, yet the normal state of a machine without a GPU driver, without TensorRT,
# or of TensorFlow's own double registration of the CUDA libraries.
_NOTICES = ("failed call to cuInit", "Unable to register cu", "Could not find TensorRT")
# `trainer.verbose` at or above this shows TensorFlow's own lines (Keras' progress is at most 2, one line per epoch).
TENSORFLOW_VERBOSE = 3
_VERBOSE_OVERRIDE = re.compile(r"^\+{0,2}trainer\.verbose=(\d+)$")


def startup_noise_removed(text: str) -> str:
    """`text` (captured stderr) without the banner, absl's INFO lines, the notices above, and the lines that
    continue them (an absl message may span lines; the lines after a dropped one, up to the next absl or
    Python line, belong to it)."""
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        match = _ABSL_LINE.match(line)
        if match:
            severity, message = match.groups()
            dropping = severity == "I" or any(notice in message for notice in _NOTICES)
        elif line.rstrip("\n") == _BANNER:
            dropping = True
            continue
        elif _PYTHON_LINE.match(line):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """File descriptor 2 into a temporary file for the block; then what `startup_noise_removed` keeps of it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = startup_noise_removed(captured.read().decode(errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def tensorflow_verbose(argv: list[str]) -> bool:
    """Whether the command line `argv` asks for TensorFlow's own lines (`trainer.verbose=3`)."""
    levels = [int(m.group(1)) for m in map(_VERBOSE_OVERRIDE.match, argv) if m]
    return bool(levels) and levels[-1] >= TENSORFLOW_VERBOSE


def import_tensorflow(argv: list[str] | None = None) -> None:
    """Import TensorFlow and probe for GPUs with the start-up lines filtered, unless the user chose a log level
    (TF_CPP_MIN_LOG_LEVEL, or `trainer.verbose=3` in `argv`, default sys.argv)."""
    if os.environ.get(DEFAULTED_ENV) != "1" or "tensorflow" in sys.modules:
        return
    if tensorflow_verbose(sys.argv[1:] if argv is None else argv):
        # Still before TensorFlow loads: its C++ logging starts at the level given here, everything.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ.pop(DEFAULTED_ENV)
        import tensorflow  # noqa: F401

        return
    with filtered_stderr():
        import tensorflow as tf

        # The first probe prints the CUDA lines; runtime.configure_runtime probes again, silently.
        tf.config.list_physical_devices("GPU")
