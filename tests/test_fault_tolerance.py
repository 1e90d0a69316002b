"""Fault tolerance: a run killed with SIGKILL resumes to the numbers of an uninterrupted one, a
half-written checkpoint is never restored, and an unwritable workdir, a full disk (at a checkpoint,
a metrics row or a TensorBoard event) or a config too large for memory is one clear error naming
the path or the key. tests/test_fault_injection.py kills runs at more moments.

Runs are real `python -m experiments.train` processes sharing a persistent JAX compilation cache
(every run here has the same shapes, so only the first one compiles).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rnnlab.errors import CheckpointError, ConfigError, RnnlabError
from rnnlab.training import checkpoint, memory, metrics_log, run_folder, train
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


@pytest.mark.slow
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


def test_resume_after_deleting_the_latest_checkpoints_by_hand(tmp_path):
  """What the "cannot be read ... Delete it" message advises; the best checkpoints of the steps
  after the one resumed from stay behind (before: StepAlreadyExistsError at every retry)."""
  workdir = str(tmp_path / "run")
  config = tiny_config(num_steps=20, eval_every=5, checkpoint_every=10)
  train.train_and_evaluate(config, workdir)
  straight = _drop_timing(train.read_metrics(workdir))
  best = run_folder.checkpoint_steps(workdir, best=True)
  shutil.rmtree(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, "20"))
  train.train_and_evaluate(config, workdir)  # resumes from 10
  assert _drop_timing(train.read_metrics(workdir)) == straight
  shutil.rmtree(os.path.join(workdir, checkpoint.CHECKPOINT_DIR))
  train.train_and_evaluate(config, workdir)  # from scratch
  assert _drop_timing(train.read_metrics(workdir)) == straight
  assert run_folder.checkpoint_steps(workdir, best=True) == best


def _best_state(value: float) -> dict:
  return {"w": np.full((3,), value, np.float32), "step": np.asarray(0, np.int32)}


def test_a_kill_between_two_best_saves_leaves_one_best_after_the_resume(tmp_path):
  """Orbax writes a new best checkpoint, then removes the old one: a kill in between left two, and
  the old one stayed for ever when no later step was better (seen once in CI's fault injection)."""
  workdir = str(tmp_path)
  ckpt = checkpoint.Checkpointer(workdir, best_mode="min")
  ckpt.save_best(20, _best_state(0.5), 0.5)
  ckpt.wait()
  best_dir = os.path.join(workdir, checkpoint.BEST_DIR)
  shutil.copytree(os.path.join(best_dir, "20"), str(tmp_path / "old20"))
  ckpt.save_best(40, _best_state(0.3), 0.3)
  ckpt.close()
  assert run_folder.checkpoint_steps(workdir, best=True) == [40]
  shutil.copytree(str(tmp_path / "old20"), os.path.join(best_dir, "20"))  # the kill's leftover
  ckpt = checkpoint.Checkpointer(workdir, best_mode="min")
  ckpt.repair_best(40, _best_state(0.3), {20: 0.5, 40: 0.3})
  ckpt.close()
  assert run_folder.checkpoint_steps(workdir, best=True) == [40]
  restored = checkpoint.Checkpointer(workdir, best_mode="min", read_only=True).restore(
      _best_state(0.0), best=True)
  np.testing.assert_array_equal(restored["w"], _best_state(0.3)["w"])


@pytest.mark.parametrize("value, kept", [(0.3, [40]), (0.7, [20])])
def test_a_kill_before_the_best_save_of_the_resumed_step_is_replayed(tmp_path, value, kept):
  """Killed after the latest checkpoint of step 40 but before its best one: the resume writes it
  when it was the best (as the uninterrupted run did), and leaves the old best when it was not."""
  workdir = str(tmp_path)
  ckpt = checkpoint.Checkpointer(workdir, best_mode="min")
  ckpt.save_best(20, _best_state(0.5), 0.5)
  ckpt.repair_best(40, _best_state(value), {20: 0.5, 40: value})
  ckpt.close()
  assert run_folder.checkpoint_steps(workdir, best=True) == kept


def test_rerun_with_fewer_steps_is_refused_and_config_json_kept(tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(tiny_config(num_steps=10), workdir)
  before = file_bytes(workdir)
  with pytest.raises(RnnlabError, match=r"already trained to step 10, past "
                     r"config.train.num_steps=5; a run is never shortened \(config.json is left"):
    train.train_and_evaluate(tiny_config(num_steps=5), workdir)
  assert file_bytes(workdir) == before


def _enospc(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_writing_metrics_names_the_file(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  real_open = open

  def full_metrics(path, *args, **kwargs):
    f = real_open(path, *args, **kwargs)
    if str(path).endswith(run_folder.METRICS_FILE) and "a" in (args[0] if args else ""):
      f.write = _enospc
    return f

  monkeypatch.setattr(metrics_log, "open", full_metrics, raising=False)
  with pytest.raises(RnnlabError) as e:
    train.train_and_evaluate(tiny_config(), workdir)
  assert str(e.value).startswith(f"could not write {workdir}/metrics.jsonl: No space left on "
                                 "device. Free space")
  assert "\n" not in str(e.value)


def test_full_disk_while_writing_tensorboard_events_names_the_directory(tmp_path, monkeypatch):
  from tensorboard.summary.writer import record_writer  # what the event writer's thread calls
  workdir = str(tmp_path / "run")
  monkeypatch.setattr(record_writer.RecordWriter, "write", _enospc)
  with pytest.raises(RnnlabError, match=f"could not write {workdir}/tensorboard: No space left "
                                        "on device"):
    train.train_and_evaluate(tiny_config(), workdir)
  # The summary and config writes go through the one atomic write, which names its path too.
  with pytest.raises(RnnlabError, match=f"could not write {workdir}/x.json: No space left"):
    monkeypatch.setattr(os, "replace", _enospc)
    run_folder.atomic_write(os.path.join(workdir, "x.json"), "{}")


def test_memory_estimate_counts_the_state_and_refuses_what_cannot_fit(tmp_path):
  trainer = train.Trainer(tiny_config())
  parts = memory.estimate(trainer)
  state = trainer.init()
  assert parts["state"] == sum(x.nbytes for x in jax.tree.leaves(state))
  assert parts["updates"] == 2 * sum(x.nbytes for x in jax.tree.leaves(state.params))
  memory.check(trainer)  # a tiny run fits
  with pytest.raises(ConfigError, match=r"needs about 0.0 GiB .* but 0.0 GiB is available on "
                                        r"this host; lower config.model.hidden_size \(now 8\)"):
    memory.check(trainer, available=1000)
