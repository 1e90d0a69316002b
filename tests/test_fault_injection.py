"""Fault injection: real training processes killed (SIGKILL) or interrupted (SIGINT) at chosen
moments of a run, then the same command again; the resumed run must end with the metric rows and
final metrics of an uninterrupted run (timing aside), each row once. And a second trainer on the
same workdir is refused while the first one's files stay intact.

The moments are found by polling the workdir (metric rows, orbax's checkpoint directories and their
temporary `<step>.orbax-checkpoint-tmp*` names while a save is in flight). Every run has the shapes
of tests/test_fault_tolerance.py, so they share its compiled programs through the session's cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest

from rnnlab.training import metrics_log, run_folder
from tests.conftest import ROOT
from tests.test_fault_tolerance import _TINY, _drop_timing, _train

_STEPS = 300
# Best checkpoints every 20 steps, latest ones every 100: a long window after the first best
# checkpoint (step 20) in which the run has no latest checkpoint to resume from.
_ARGS = [*_TINY, f"--config.train.num_steps={_STEPS}", "--config.train.log_every=10",
         "--config.train.eval_every=20", "--config.train.checkpoint_every=100"]
_Moment = Callable[[str], bool]


@pytest.fixture(scope="module")
def straight(env, tmp_path_factory) -> str:
  """The uninterrupted run every interrupted one must equal."""
  workdir = str(tmp_path_factory.mktemp("straight") / "run")
  result = _train(env, *_ARGS, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _start(env: dict[str, str], workdir: str, log: str) -> subprocess.Popen:
  with open(log, "w") as err:  # a file, not a pipe: nobody reads it while the run goes on
    return subprocess.Popen([sys.executable, "-m", "experiments.train", *_ARGS,
                             f"--workdir={workdir}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=err)


def _wait_for(proc: subprocess.Popen, moment: _Moment, workdir: str, log: str) -> None:
  deadline = time.time() + 240
  while not moment(workdir):
    if proc.poll() is not None or time.time() > deadline:
      proc.kill()
      with open(log) as f:
        pytest.fail(f"the run never reached the moment (exit {proc.poll()}):\n{f.read()[-3000:]}")
    time.sleep(0.002)


def _signal_at(env: dict[str, str], workdir: str, moment: _Moment, signum: int
               ) -> tuple[int, str]:
  """Starts the run, sends `signum` at `moment`, waits for the process; returns its exit code and
  stderr."""
  log = f"{workdir}.{signum}.log"
  proc = _start(env, workdir, log)
  try:
    _wait_for(proc, moment, workdir, log)
    proc.send_signal(signum)
    proc.wait(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  with open(log) as f:
    return proc.returncode, f.read()


def _rows(workdir: str) -> list[dict]:
  return _drop_timing(metrics_log.read(workdir))


def _assert_like_straight(workdir: str, straight: str) -> None:
  rows = metrics_log.read(workdir)
  keys = [(r["step"], "loss" in r) for r in rows]  # a step has one train row and one eval row
  assert len(keys) == len(set(keys)), f"duplicate rows: {keys}"
  assert _rows(workdir) == _rows(straight)
  summaries = []
  for w in (workdir, straight):
    with open(os.path.join(w, run_folder.SUMMARY_FILE)) as f:
      summaries.append(json.load(f))
  assert summaries[0]["steps"] == _STEPS
  assert summaries[0]["final"] == summaries[1]["final"]
  assert summaries[0]["steps_to_solve"] == summaries[1]["steps_to_solve"]
  for best in (False, True):
    assert (run_folder.checkpoint_steps(workdir, best)
            == run_folder.checkpoint_steps(straight, best))


def _rerun(env: dict[str, str], workdir: str) -> subprocess.CompletedProcess:
  result = _train(env, *_ARGS, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _in_flight(workdir: str) -> bool:
  """A checkpoint (latest or best) is being written: orbax's temporary directory exists."""
  for sub in (run_folder.CHECKPOINT_DIR, run_folder.BEST_CHECKPOINT_DIR):
    directory = os.path.join(workdir, sub)
    names = os.listdir(directory) if os.path.isdir(directory) else []
    if any(".orbax-checkpoint-tmp" in name for name in names):
      return True
  return False


def _best_but_no_latest(workdir: str) -> bool:
  return (bool(run_folder.checkpoint_steps(workdir, best=True))
          and not run_folder.checkpoint_steps(workdir))


def _logged(n: int) -> _Moment:
  return lambda workdir: sum("loss" in r for r in metrics_log.read(workdir)) >= n


@pytest.mark.slow
def test_sigkill_between_the_first_best_and_the_first_latest_checkpoint(env, straight, tmp_path):
  """Was: StepAlreadyExistsError for the best step on every retry."""
  workdir = str(tmp_path / "run")
  _signal_at(env, workdir, _best_but_no_latest, signal.SIGKILL)
  assert not run_folder.checkpoint_steps(workdir)  # killed inside the window
  assert run_folder.checkpoint_steps(workdir, best=True)
  result = _rerun(env, workdir)
  assert "Resumed from" not in result.stderr  # nothing to resume: from scratch, best rewound
  _assert_like_straight(workdir, straight)


@pytest.mark.parametrize("signum, exit_code", [
    (signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_sigint_stops_at_a_step_boundary_and_resumes_exactly(env, straight, tmp_path, signum,
                                                              exit_code):
  """Ctrl-C, or SIGTERM (`kill`, a cluster's time limit or preemption), stops at a step boundary
  with a checkpoint there (SIGTERM was: the process ended at once, losing the steps since the
  last checkpoint)."""
  workdir = str(tmp_path / "run")
  code, proc_log = _signal_at(env, workdir, _logged(3), signum)
  assert code == exit_code, proc_log[-3000:]
  last = proc_log.strip().splitlines()[-1]
  assert last.startswith("interrupted at step "), proc_log[-3000:]
  assert last.endswith("; run the same command to resume")
  assert "Traceback" not in proc_log
  step = int(last.split()[3].rstrip(";"))
  assert 30 <= step < _STEPS
  assert run_folder.checkpoint_steps(workdir)[-1] == step  # saved at the boundary it stopped at
  assert max(r["step"] for r in metrics_log.read(workdir)) <= step
  result = _rerun(env, workdir)
  assert f"Resumed from the checkpoint at step {step}" in result.stderr
  _assert_like_straight(workdir, straight)


@pytest.mark.slow
def test_second_trainer_on_a_workdir_is_refused(env, straight, tmp_path):
  workdir = str(tmp_path / "run")
  log = f"{workdir}.log"
  first = _start(env, workdir, log)
  try:
    _wait_for(first, _logged(1), workdir, log)
    # Paused, the first holds its lock while the second starts, however fast the machine trains
    # the first's remaining steps (it finished before the second began, on a fast CPU).
    first.send_signal(signal.SIGSTOP)
    try:
      second = _train(env, *_ARGS, f"--workdir={workdir}")
    finally:
      first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=240) == 0
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()
  assert second.returncode == 1
  assert "Traceback" not in second.stderr
  line, = [x for x in second.stderr.splitlines() if x.startswith("error:")]
  assert f"is in use: process {first.pid} on " in line, second.stderr[-2000:]
  assert "use another --workdir" in line
  _assert_like_straight(workdir, straight)  # the first run's files, untouched by the second
  assert not os.path.exists(os.path.join(workdir, run_folder.LOCK_OWNER_FILE))


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write(env, straight, tmp_path):
  workdir = str(tmp_path / "run")
  _signal_at(env, workdir, _in_flight, signal.SIGKILL)
  _rerun(env, workdir)
  _assert_like_straight(workdir, straight)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["first_row", "first_latest", "twice"])
def test_sigkill_at_other_moments(env, straight, tmp_path, moment):
  workdir = str(tmp_path / "run")
  if moment == "first_row":  # before any checkpoint at all
    _signal_at(env, workdir, _logged(1), signal.SIGKILL)
  elif moment == "first_latest":  # rows and a best checkpoint after the latest one
    _signal_at(env, workdir, lambda w: bool(run_folder.checkpoint_steps(w)) and _logged(13)(w),
               signal.SIGKILL)
  else:  # the resumed run is killed too, after its own first checkpoint
    _signal_at(env, workdir, _best_but_no_latest, signal.SIGKILL)
    _signal_at(env, workdir, lambda w: bool(run_folder.checkpoint_steps(w)), signal.SIGKILL)
  _rerun(env, workdir)
  _assert_like_straight(workdir, straight)
