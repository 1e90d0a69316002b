"""Shared fixtures: tiny configs that train in seconds, and a runner for the entry points."""

import os
import subprocess
import sys
import tempfile

import pytest

# One persistent XLA compilation cache per test session, shared by the in-process tests and the
# entry-point subprocesses: the tiny configs compile the same programs again and again. Set before
# JAX is imported so that every process picks it up from the environment.
_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                               tempfile.mkdtemp(prefix="rnnlab-test-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from configs import base  # noqa: E402
from experiments import cli  # noqa: E402  (no JAX backend is started by importing it)

cli.use_safe_cpu_scheduler()  # avoids the XLA:CPU deadlock it names, in-process and in subprocesses


def tiny_config(task: str = "copy", cell: str = "lstm", **train):
  config = base.get_config()
  config.task.name = task
  config.task.length = 5 if task == "copy" else 10
  config.model.cell = cell
  config.model.hidden_size = 8
  config.train.batch_size = 8
  config.train.num_steps = 20
  config.train.log_every = 5
  config.train.eval_every = 10
  config.train.eval_batches = 2
  config.train.eval_batch_size = 16
  config.train.checkpoint_every = 10
  for k, v in train.items():
    config.train[k] = v
  return config


def entry_env() -> dict[str, str]:
  """Environment of entry-point subprocesses: the repository on the path, the CPU, and (through
  os.environ, set above) the session's compilation cache."""
  return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
  return entry_env()


def run_entry(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  """Runs `python -m module args...` from the repository root, capturing output."""
  env = entry_env()
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def file_bytes(directory: str) -> dict[str, bytes]:
  """Every file under `directory` (relative path -> contents): to show a run left them untouched."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def committed_results_status() -> str:
  """`git status --porcelain` of experiments/results (untracked files listed one by one): equal
  before and after a command shows that it left the committed results alone."""
  return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all",
                         "experiments/results"], cwd=ROOT, capture_output=True, text=True,
                        check=True).stdout


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long end-to-end runs, kept out of the default run "
                          "(-m 'not slow'); .ci/run runs them after it")
