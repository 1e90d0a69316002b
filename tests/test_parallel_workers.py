"""Studies and sweeps in parallel worker processes: the same table as one worker, resumable after
the whole study is killed, and the second sweep into one workdir refused."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from configs import compare as compare_config
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.studies import launch, memory_grid, memory_study, report, sweep, sweep_spec
from rnnlab.training import run_folder
from tests.conftest import ROOT, entry_env, run_entry, tiny_config

TIMING = {"wall_time_sec", "steps_per_sec", "workdir"}


def _table(results_dir: str) -> list[dict]:
  rows = report.read_csv(os.path.join(results_dir, "compare.csv"))
  return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _quick():
  config = compare_config.get_config("quick")
  config.compare.cells = "vanilla,gru"   # 4 points
  return config


@pytest.mark.slow
def test_two_workers_give_the_table_of_one(tmp_path):
  tables = {}
  for workers in (1, 2):
    base = tmp_path / f"w{workers}"
    rows = memory_study.run(_quick(), str(base), str(base), "TEST",
                            training=launch.Training(parallel=workers))
    assert [r["status"] for r in rows] == ["finished"] * 4
    tables[workers] = _table(str(base))
  assert tables[1] == tables[2]
  md = open(tmp_path / "w2" / "compare.md").read()
  assert "2 worker process(es)" in md and "seeds mapped by map" in md


def test_bad_parallel_is_a_config_error(tmp_path):
  points = sweep.make_points(tiny_config(), sweep_spec.product([("model.cell", ["gru"])]),
                             str(tmp_path))
  with pytest.raises(ConfigError, match="parallel must be an integer >= 1, got 0"):
    sweep.run_points(points, parallel=0)


@pytest.mark.slow
def test_second_sweep_into_the_same_workdir_is_refused(tmp_path):
  config = tiny_config(num_steps=10)
  base = str(tmp_path / "sweep")
  first = sweep_spec.product(sweep_spec.parse_spec("model.cell=vanilla,gru", config))
  launch.run_sweep(config, first, base)
  before = open(os.path.join(base, sweep.MANIFEST_FILE)).read()
  other = sweep_spec.product(sweep_spec.parse_spec("model.hidden_size=4,6", config))
  with pytest.raises(ConfigError, match="holds another sweep .2 points; new points: hidden=4"):
    launch.run_sweep(config, other, base)
  assert open(os.path.join(base, sweep.MANIFEST_FILE)).read() == before
  launch.run_sweep(config, first, base)  # the same sweep again resumes (here: all finished)


def test_point_name_too_long_for_the_file_system_is_shortened(tmp_path):
  overrides = (("task.name", "x" * 300),)
  name = sweep.point_name(overrides)
  assert len(name.encode()) <= sweep.MAX_NAME_BYTES and "~" in name
  assert sweep.point_name(overrides) == name  # stable: a rerun finds the same workdir
  assert sweep.point_name((("task.name", "x" * 299 + "y"),)) != name
  os.makedirs(tmp_path / name)


@pytest.mark.slow
def test_killed_parallel_study_resumes_to_the_same_table(tmp_path):
  """SIGKILL to the whole study (parent and workers) once a point has a checkpoint; the same
  command then finishes and its table equals an uninterrupted study's."""
  args = [sys.executable, "-m", "experiments.compare", "--config=configs/compare.py:quick",
          "--config.compare.cells=vanilla,gru", "--config.train.num_steps=200",
          "--config.compare.overrides.copy=train.num_steps=200",
          "--config.compare.overrides.adding=train.num_steps=200", "--parallel=2"]
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  assert subprocess.run(args + [f"--workdir={straight}"], cwd=ROOT, env=entry_env(),
                        capture_output=True, timeout=900).returncode == 0
  proc = subprocess.Popen(args + [f"--workdir={killed}"], cwd=ROOT, env=entry_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  deadline = time.time() + 600
  while not list(killed.glob("*/checkpoints/*")) and time.time() < deadline:
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (killed / "compare.csv").exists()
  result = subprocess.run(args + [f"--workdir={killed}"], cwd=ROOT, env=entry_env(),
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-2000:]
  assert _table(str(killed)) == _table(str(straight))


def test_worker_cpus_split_the_cpus_among_the_workers(monkeypatch):
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 1}, raising=False)
  assert sweep.worker_cpus(2) == [{1}, {3}]
  assert sweep.worker_cpus(1) == [{1, 3}]
  assert sweep.worker_cpus(3) == [None, None, None]  # more workers than CPUs: no pinning
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(7)), raising=False)
  assert sweep.worker_cpus(3) == [{0, 1}, {2, 3}, {4, 5}]  # disjoint equal shares


def _spawned_children(pid: int) -> list[int]:
  with open(f"/proc/{pid}/task/{pid}/children") as f:
    children = [int(c) for c in f.read().split()]
  out = []
  for child in children:
    try:
      with open(f"/proc/{child}/cmdline", "rb") as f:
        if b"spawn_main" in f.read():
          out.append(child)
    except FileNotFoundError:
      pass
  return out


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_workers_stop_when_the_study_process_is_killed(tmp_path):
  """SIGKILL to the study's own process only (as an OOM killer or a scheduler may do): its
  worker processes notice and exit instead of training on unseen."""
  args = [sys.executable, "-m", "experiments.compare", "--config=configs/compare.py:quick",
          "--config.compare.cells=vanilla,gru", "--config.train.num_steps=100000",
          "--config.compare.overrides.copy=train.num_steps=100000",
          "--config.compare.overrides.adding=train.num_steps=100000", "--parallel=2",
          f"--workdir={tmp_path}"]
  proc = subprocess.Popen(args, cwd=ROOT, env=entry_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    deadline = time.time() + 300
    while not list(tmp_path.glob("*/checkpoints/*")) and time.time() < deadline:
      time.sleep(0.2)
    workers = _spawned_children(proc.pid)
    assert len(workers) == 2
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < deadline:
      time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
  finally:
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass


@pytest.mark.slow
def test_workers_speedup_report(tmp_path):
  from tests.conftest import run_entry
  result = run_entry("experiments.workers_speedup", "--steps=10", "--hidden=8", "--cells=gru",
                     "--steady_steps=3", f"--results_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-2000:]
  md = open(tmp_path / "workers_speedup.md").read()
  rows = [line for line in md.splitlines() if line.startswith("| ")]
  walls = {r.split("|")[1].strip(): r for r in rows if r.split("|")[1].strip() in ("1", "2")}
  assert set(walls) == {"1", "2"}
  for r in walls.values():
    assert r.split("|")[2].strip() == "2" and float(r.split("|")[3]) > 0  # 2 points, timed
  two_cpus = len(os.sched_getaffinity(0)) >= 2
  assert ("pinned as workers 1 and 2" in md) == two_cpus


# Holds the run lock of workdir argv[1] as a training process does (`run_folder.open_run`, with
# the point's config from the JSON file argv[2]) until killed.
_HOLD_RUN = """
import json, sys, time
import ml_collections
from rnnlab.training import run_folder
with open(sys.argv[2]) as f:
  config = ml_collections.ConfigDict(json.load(f))
with run_folder.open_run(config, sys.argv[1]):
  print("held", flush=True)
  time.sleep(300)
"""


def _hold(point: sweep.Point, tmp_path) -> subprocess.Popen:
  """A process training `point` (as far as its lock says), started and holding the lock."""
  config_file = tmp_path / "held_config.json"
  config_file.write_text(point.config.to_json())
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_RUN, point.workdir, str(config_file)],
                            cwd=ROOT, env=entry_env(), stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  return holder


def _refused(result: subprocess.CompletedProcess, holder: subprocess.Popen, point: sweep.Point):
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  line, = [x for x in result.stderr.splitlines() if x.startswith("error:")]
  assert f"{point.workdir!r} is in use: process {holder.pid} on " in line, line


def test_a_second_run_of_a_running_study_writes_nothing(tmp_path):
  """experiments.compare while another process trains one of its points: one error naming that
  process, before the study records a session or trains anything (was: its session appended to
  sweep.json, then the same error from a worker)."""
  workdir = tmp_path / "study"
  config = compare_config.get_config("quick")
  points = memory_grid.make_points(config, str(workdir))
  held = points[2]
  holder = _hold(held, tmp_path)
  try:
    result = subprocess.run(
        [sys.executable, "-m", "experiments.compare", "--config=configs/compare.py:quick",
         f"--workdir={workdir}", "--parallel=2"],
        cwd=ROOT, env=entry_env(), capture_output=True, text=True, timeout=300)
  finally:
    holder.kill()
    holder.wait()
  _refused(result, holder, held)
  assert os.listdir(workdir) == [held.name]  # no sweep.json, no report, no other point


def test_a_sweep_whose_point_is_being_trained_writes_nothing(tmp_path):
  workdir = tmp_path / "sweep"
  config = tiny_config("adding", "vanilla", num_steps=10)
  overrides = sweep_spec.product(sweep_spec.parse_spec("train.learning_rate=1e-3,3e-3", config))
  held = sweep.make_points(config, overrides, str(workdir))[1]
  holder = _hold(held, tmp_path)
  try:
    with pytest.raises(RnnlabError, match="is in use: process"):
      launch.run_sweep(config, overrides, str(workdir))
  finally:
    holder.kill()
    holder.wait()
  assert os.listdir(workdir) == [held.name]  # no sweep.json, the other point not started


def test_errors_cross_process_boundaries_whole():
  """An error from a worker reaches the study with its message and attributes (was: Interrupted
  re-built from its message alone: "interrupted at step interrupted at step 5; ...")."""
  import pickle

  from rnnlab.errors import Interrupted, NonFiniteError
  error = pickle.loads(pickle.dumps(Interrupted("interrupted at step 5", step=5, exit_code=143)))
  assert (str(error), error.step, error.exit_code) == ("interrupted at step 5", 5, 143)
  error = pickle.loads(pickle.dumps(NonFiniteError("loss is nan", step=3)))
  assert (str(error), error.step) == ("loss is nan", 3)


# experiments.compare with Ctrl-C answered as in a terminal, even when this test process ignores
# SIGINT (a background job does, and its children inherit that).
_AS_FROM_A_TERMINAL = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
                       "signal.default_int_handler); sys.argv[0] = 'experiments.compare'; "
                       "runpy.run_module('experiments.compare', run_name='__main__')")

# Points no worker finishes before it is stopped: the tiny model trains thousands of steps a
# second on a fast CPU (100,000 steps were done within a test's wait there).
_LONG_QUICK_STUDY = [
    "--config=configs/compare.py:quick", "--parallel=2", "--config.train.num_steps=10000000",
    "--config.compare.overrides.copy=train.num_steps=10000000",
    "--config.compare.overrides.adding=train.num_steps=10000000",
    "--config.train.checkpoint_every=100000", "--config.train.eval_every=100000",
    "--config.train.log_every=50"]


@pytest.mark.slow
@pytest.mark.parametrize("how, exit_code", [("ctrl-c", 130), ("sigterm", 143),
                                            ("ctrl-c twice", 130), ("a worker killed", 1)])
def test_a_stopped_parallel_study_saves_its_points_and_exits_at_once(tmp_path, how, exit_code):
  """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM to the study alone
  stops both workers' points at a step boundary with a checkpoint there, starts no other, and
  ends with one line naming the points and steps; a second Ctrl-C aborts at once (was: the
  workers' Interrupted garbled in one "error:" line, and the study waited for a worker to train
  a further point to its end before it exited). A worker killed outright (the OS's answer to
  running out of memory) is one error line (was: a BrokenProcessPool traceback)."""
  workdir = tmp_path / "study"
  log = tmp_path / "study.log"
  with open(log, "w") as out:
    study = subprocess.Popen(
        [sys.executable, "-c", _AS_FROM_A_TERMINAL, f"--workdir={workdir}", *_LONG_QUICK_STUDY],
        cwd=ROOT, env=entry_env(), stdout=out, stderr=out, start_new_session=True)
  try:
    deadline = time.time() + 240
    while log.read_text().count("step 50/") < 2:  # both workers are training
      assert study.poll() is None and time.time() < deadline, log.read_text()[-3000:]
      time.sleep(0.1)
    if how == "sigterm":
      study.send_signal(signal.SIGTERM)
    elif how == "a worker killed":
      os.kill(_spawned_children(study.pid)[0], signal.SIGKILL)
    else:
      if how == "ctrl-c twice":
        # Frozen, the workers cannot finish their graceful stop before the second Ctrl-C (on a
        # fast CPU they did, within the 0.3 s, and the study ended "interrupted").
        for worker in _spawned_children(study.pid):
          os.kill(worker, signal.SIGSTOP)
      os.killpg(study.pid, signal.SIGINT)
      if how == "ctrl-c twice":
        time.sleep(0.3)
        os.killpg(study.pid, signal.SIGINT)
    stopped_at = time.time()
    assert study.wait(timeout=120) == exit_code, log.read_text()[-3000:]
  finally:
    if study.poll() is None:
      study.kill()
      study.wait()
  assert time.time() - stopped_at < 30  # not after a further point's training
  text = log.read_text()
  assert "Traceback" not in text
  last = text.strip().splitlines()[-1]
  if how == "a worker killed":
    assert re.fullmatch(r"error: a worker process died abruptly \(.*\) while task=\S+, task=\S+ "
                        r"trained; the study stopped\. Run the same command to resume: each "
                        r"point resumes from its latest checkpoint", last), last
    return
  if how == "ctrl-c twice":
    assert last == "aborted by Ctrl-C; run the same command to resume from the latest checkpoints"
    return
  match = re.fullmatch(r"interrupted: (.+); 2 more not started; run the same command to resume",
                       last)
  assert match, last
  stopped = dict(re.fullmatch(r"(\S+) at step (\d+)", part).groups()
                 for part in match.group(1).split(", "))
  assert len(stopped) == 2
  for name, step in stopped.items():
    assert run_folder.checkpoint_steps(str(workdir / name))[-1] == int(step)
  assert sum(1 for p in workdir.iterdir() if (p / "config.json").exists()) == 2  # none begun


@pytest.mark.slow
def test_a_failing_point_stops_the_other_workers_at_once(tmp_path):
  """A point that fails in one worker stops the point of the other at a step boundary and its
  error is raised then (was: after the other worker had trained its point to the end); the
  worker whose point failed begins no further point."""
  config = tiny_config("adding", "vanilla", num_steps=10**6, log_every=50, eval_every=10**6,
                       checkpoint_every=10**6)  # an hour or more, unless stopped
  overrides = sweep_spec.product(sweep_spec.parse_spec("train.learning_rate=1e-3,2e-3,3e-3",
                                                       config))
  points = sweep.make_points(config, overrides, str(tmp_path))
  os.makedirs(points[0].workdir)
  other = points[0].config.copy_and_resolve_references()
  other.model.hidden_size += 1
  (tmp_path / points[0].name / "config.json").write_text(other.to_json())  # another run's folder
  start = time.time()
  with pytest.raises(ConfigError, match="holds a run with"):
    launch.run_sweep(config, overrides, str(tmp_path), launch.Training(parallel=2))
  assert time.time() - start < 120  # point 1 stopped: its 10**6 steps take an hour or more
  assert os.path.exists(os.path.join(points[1].workdir, "config.json"))  # it had begun
  assert not os.path.exists(points[2].workdir)  # the failed point's worker began no other


@pytest.mark.slow
def test_the_workers_log_progress_without_library_chatter(tmp_path):
  """The entry point's log filter travels to the worker processes: their progress lines show,
  orbax's per-save INFO lines do not, nor absl's warning about logging before flag parsing."""
  result = run_entry("experiments.compare", "--config=configs/compare.py:quick",
                     f"--workdir={tmp_path}/w", "--parallel=2")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 20/20" in result.stderr and "steps/s" in result.stderr
  for chatter in ("CheckpointManager", "Save Finalize", "Logging before flag parsing"):
    assert chatter not in result.stderr, chatter
