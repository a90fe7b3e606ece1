"""A quiet console: TensorFlow's C++ start-up lines are hidden, real warnings and errors still show."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.e2e import LEAN, ROOT, create_store, train_env
from xent_lab import console

ABSL_INFO = re.compile(r"^I\d{4} ", re.MULTILINE)
STARTUP = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796123625.278324   15609 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796123625.279244   15609 cpu_feature_guard.cc:210] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.
E0000 00:00:1796123630.013526   15609 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
"""
REAL = """W0000 00:00:1796123630.013526   15609 gpu_device.cc:2342] Cannot dlopen some GPU libraries.
/x.py:1: UserWarning: provoked
  warnings.warn("provoked")
"""

# Runs the real entry point, and provokes inside the filtered window (while TensorFlow is imported) a Python
# warning and an absl error line, as TensorFlow's own would come.
_PROVOKING_RUN = """
import os, runpy, sys, warnings

class Provoke:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow.python":
            sys.meta_path.remove(self)
            warnings.warn("provoked on purpose", UserWarning)
            os.write(2, b"E0000 00:00:1.5 1 provoke.cc:1] provoked C++ error\\n")
        return None

sys.meta_path.insert(0, Provoke())
runpy.run_module("xent_lab.train", run_name="__main__", alter_sys=True)
"""


def test_the_filter_drops_startup_lines_and_keeps_warnings_and_errors():
    assert console.startup_noise_removed(STARTUP + REAL) == REAL
    assert console.startup_noise_removed("plain text\n") == "plain text\n"


def test_the_filtered_window_replays_what_it_keeps(capfd):
    with console.filtered_stderr():
        os.write(2, (STARTUP + REAL).encode())  # file descriptor 2, where C++ and Python's own stderr write
    assert capfd.readouterr().err == REAL


@pytest.mark.subprocess
def test_a_default_run_prints_no_startup_line_but_a_provoked_warning(tmp_path, cache_dir):
    env = {key: value for key, value in train_env(cache_dir).items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.pop(console.DEFAULTED_ENV, None)  # as a user's shell: set by xent_lab in this test process
    env["PYTHONPATH"] = str(ROOT)
    create_store(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _PROVOKING_RUN, *LEAN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "provoked on purpose" in done.stderr and "provoked C++ error" in done.stderr
    assert not ABSL_INFO.search(done.stderr), done.stderr
    assert "absl::InitializeLog" not in done.stderr and "cuInit" not in done.stderr
    assert "test accuracy" in done.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize("users_level,level,filtered", [(None, "2", "1"), ("0", "0", "None")])
def test_only_a_level_the_user_did_not_choose_is_filtered(users_level, level, filtered):
    """With the user's own TF_CPP_MIN_LOG_LEVEL, `console.import_tensorflow` leaves TensorFlow's lines alone."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", console.DEFAULTED_ENV)
    }
    env |= {"TF_CPP_MIN_LOG_LEVEL": users_level} if users_level else {}
    code = f"import os, xent_lab; print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ.get({console.DEFAULTED_ENV!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [level, filtered]


def test_only_the_command_lines_last_verbose_override_of_3_or_more_asks_for_tensorflows_lines():
    assert console.tensorflow_verbose(["loss=cce", "trainer.verbose=3"])
    assert console.tensorflow_verbose(["+trainer.verbose=4"])
    assert not console.tensorflow_verbose(["trainer.verbose=3", "trainer.verbose=2"])
    assert not console.tensorflow_verbose(["trainer.verbose=2", "model.verbose=3"])
    assert not console.tensorflow_verbose([])


# Below 3 the lines stay hidden: the default run above shows none, and the override's parsing is checked in-process.
@pytest.mark.subprocess
def test_trainer_verbose_3_brings_tensorflows_startup_lines_back():
    """A real TensorFlow import, as `xent_lab.train` does it first, with the user's shell environment."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", console.DEFAULTED_ENV)
    }
    code = "import sys; from xent_lab import console; console.import_tensorflow(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, "trainer.verbose=3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # TensorFlow's oneDNN notice is an absl INFO line on every x86 CPU build.
    assert ABSL_INFO.search(done.stderr), done.stderr
