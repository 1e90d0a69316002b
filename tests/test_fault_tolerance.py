"""Fault tolerance: a run killed with SIGKILL resumes to the numbers of an uninterrupted one, a
half-written checkpoint is never restored, and an unwritable workdir or a full disk is one clear
error naming the path.

Runs are real `python -m experiments.train` processes sharing a persistent JAX compilation cache
(every run here has the same shapes, so only the first one compiles).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rnnlab.errors import CheckpointError, RnnlabError
from rnnlab.training import checkpoint, train
from tests.conftest import ROOT, file_bytes, tiny_config

# Shapes shared by every run of this module (so they share compiled programs); the cadence varies.
_TINY = ["--config=configs/copy.py", "--config.model.hidden_size=8",
         "--config.train.batch_size=8", "--config.task.length=4",
         "--config.train.eval_batches=1", "--config.train.eval_batch_size=8",
         "--config.train.stop_when_solved=False"]


def _cadence(num_steps: int, log: int, every: int) -> list[str]:
  return [f"--config.train.num_steps={num_steps}", f"--config.train.log_every={log}",
          f"--config.train.eval_every={every}", f"--config.train.checkpoint_every={every}"]


def _train(env: dict[str, str], *args: str, code: str | None = None
           ) -> subprocess.CompletedProcess:
  """`python -m experiments.train args` (or `python -c code args`, for a patched entry point)."""
  command = ["-m", "experiments.train"] if code is None else ["-c", code]
  return subprocess.run([sys.executable, *command, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def finished(env, tmp_path_factory) -> str:
  """A finished 10-step run (checkpoints at 5 and 10); tests copy it before changing it."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  result = _train(env, *_TINY, *_cadence(10, 5, 5), f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _drop_timing(rows: list[dict]) -> list[dict]:
  return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in rows]


def _complete_steps(directory: str) -> list[int]:
  """Steps orbax has finished writing (a save in progress is a `<step>.orbax-checkpoint-tmp*`)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


_KILL_STEPS = 400


def test_sigkill_then_same_command_resumes_to_the_same_numbers(env, tmp_path):
  workdir = str(tmp_path / "killed")
  args = [*_TINY, *_cadence(_KILL_STEPS, 10, 50), f"--workdir={workdir}"]
  proc = subprocess.Popen([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  ckpt_dir = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  try:
    deadline = time.time() + 240
    while not _complete_steps(ckpt_dir) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)  # between checkpoints, or in the middle of a save
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == -signal.SIGKILL
  killed_at = _complete_steps(ckpt_dir)
  assert killed_at and killed_at[-1] < _KILL_STEPS, killed_at

  result = _train(env, *args)  # the same command again
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resumed from the checkpoint at step {killed_at[-1]}" in result.stderr
  straight = str(tmp_path / "straight")
  result = _train(env, *_TINY, *_cadence(_KILL_STEPS, 10, 50), f"--workdir={straight}")
  assert result.returncode == 0, result.stderr[-3000:]

  resumed_rows = train.read_metrics(workdir)
  assert [r["step"] for r in resumed_rows if "loss" in r] == list(range(10, _KILL_STEPS + 1, 10))
  assert _drop_timing(resumed_rows) == _drop_timing(train.read_metrics(straight))
  summaries = []
  for w in (workdir, straight):
    with open(os.path.join(w, train.SUMMARY_FILE)) as f:
      summaries.append(json.load(f))
  assert summaries[0]["steps"] == _KILL_STEPS
  assert summaries[0]["final"] == summaries[1]["final"]
  assert _complete_steps(ckpt_dir)[-1] == _KILL_STEPS


def test_half_written_checkpoint_is_never_the_latest(env, finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  ckpt_dir = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  assert _complete_steps(ckpt_dir) == [5, 10]
  # What orbax leaves when killed mid-save: the step's files under a temporary name (this
  # version: `<step>.orbax-checkpoint-tmp`; older ones append `-<timestamp>`), some missing.
  half = os.path.join(ckpt_dir, "15.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(ckpt_dir, "10"), half)
  shutil.rmtree(os.path.join(half, "default"))
  older = os.path.join(ckpt_dir, "20.orbax-checkpoint-tmp-1732550000", "default")
  os.makedirs(older)
  with open(os.path.join(older, "manifest.ocdbt"), "w") as f:
    f.write("half")

  reader = checkpoint.Checkpointer(workdir, read_only=True)
  assert reader.latest_step() == 10
  reader.close()
  assert os.path.isdir(half)  # a reader (e.g. evaluate during training) deletes nothing

  result = _train(env, *_TINY, *_cadence(15, 5, 5), f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from the checkpoint at step 10" in result.stderr
  assert [r["step"] for r in train.read_metrics(workdir) if "loss" in r] == [5, 10, 15]
  # The writer removed the leftovers and saved step 15 for real.
  assert sorted(os.listdir(ckpt_dir)) == ["10", "15", "5"]


def test_unwritable_workdir_is_refused_at_start(env, tmp_path):
  regular_file = tmp_path / "a_file"
  regular_file.write_text("not a directory")
  for workdir in (str(regular_file / "run"), "/proc/rnnlab_run"):
    with pytest.raises(RnnlabError, match=f"cannot write to workdir '{workdir}'"):
      train.train_and_evaluate(tiny_config(), workdir)  # fails before anything compiles
  result = _train(env, *_TINY, f"--workdir={regular_file}/run")
  assert result.returncode == 1
  assert f"error: cannot write to workdir '{regular_file}/run': Not a directory" in result.stderr
  assert "Traceback" not in result.stderr


# The entry point with every orbax save failing as on a full disk.
_FULL_DISK = """
import errno, os, runpy, sys
import orbax.checkpoint as ocp

def full(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

ocp.CheckpointManager.save = full
sys.argv[0] = "experiments/train.py"
runpy.run_module("experiments.train", run_name="__main__", alter_sys=True)
"""


def test_full_disk_at_save_names_the_path_and_keeps_the_checkpoints(env, finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  before = file_bytes(os.path.join(workdir, checkpoint.CHECKPOINT_DIR))
  result = _train(env, *_TINY, *_cadence(15, 5, 5), f"--workdir={workdir}", code=_FULL_DISK)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  # The first save of the resumed run (the best checkpoint of step 15) is the one that fails.
  assert (f"error: could not write checkpoints to {workdir}/best_checkpoint (saving step 15): "
          "No space left on device.") in result.stderr
  assert "run the same command again" in result.stderr
  assert file_bytes(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)) == before


def test_background_write_failure_is_recognised():
  """Orbax's writer threads report a full disk as tensorstore's ValueError, at the next save."""
  def tensorstore_full():
    raise ValueError("RESOURCE_EXHAUSTED: Error writing local file \"/w/checkpoints/10/x\": "
                     "Failed to write 5505 bytes to file 5: No space left on device "
                     "[os_error_code='28']")

  with pytest.raises(CheckpointError, match="to /w/checkpoints: No space left on device"):
    checkpoint._writing("/w/checkpoints", None, tensorstore_full)

  def bug():
    raise ValueError("pytree structure mismatch")

  with pytest.raises(ValueError, match="pytree structure mismatch"):  # not disguised as I/O
    checkpoint._writing("/w/checkpoints", 10, bug)
