"""Sweeps through submitit: local jobs give the inline sweep's table, finished points are not
submitted, partial ones resume, and the README's Slurm command builds the right sbatch array."""

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.studies import launch, sweep, sweep_spec
from rnnlab.training import train
from tests.conftest import ROOT, run_entry, tiny_config

# The command of README.md's "Sweeps on a cluster" section (its workdir is replaced in the test).
README_COMMAND = r"""python -m experiments.sweep --config=configs/adding.py \
    --workdir=$HOME/sweeps/adding \
    --sweep='model.cell=vanilla,lstm,gru;train.learning_rate=1e-3,3e-3' \
    --launcher=slurm --slurm_partition=gpu --slurm_time_min=120 --slurm_cpus_per_task=4 \
    --slurm_gpus_per_node=1 --slurm_mem_gb=16 --slurm_array_parallelism=6"""
README_WORKDIR = "$HOME/sweeps/adding"

# Timing columns differ between two runs of the same point; everything else must not.
_TIMING = {"wall_time_sec", "steps_per_sec"}


def _config():
  return tiny_config("adding", "vanilla", num_steps=10, log_every=5, eval_every=5,
                     checkpoint_every=5)


def _table(rows):
  return [{k: v for k, v in r.items() if k not in _TIMING} for r in rows]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
  """The same 2 points swept inline and through submitit's LocalExecutor; before the local
  launch, point 0 is finished (a copy of the inline run) and point 1 was interrupted at step 5."""
  tmp = tmp_path_factory.mktemp("launch")
  config = _config()
  overrides = sweep_spec.product(sweep_spec.parse_spec("train.learning_rate=1e-3,3e-3", config))
  inline_rows = launch.run_sweep(config, overrides, str(tmp / "inline")).rows

  base = str(tmp / "local")
  points = sweep.make_points(config, overrides, base)
  shutil.copytree(os.path.join(tmp, "inline", points[0].name), points[0].workdir)
  short = points[1].config.copy_and_resolve_references()
  short.train.num_steps = 5
  train.train_and_evaluate(short, points[1].workdir)
  before = train.read_metrics(points[1].workdir)
  assert [sweep.status(p) for p in points] == ["finished", "partial"]

  # The job processes inherit this environment: rnnlab importable, the deadlock-free scheduler.
  env = {"PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    result = launch.run_sweep(config, overrides, base, launch.Training(
        "local", resources=launch.Resources(time_min=10, local_parallelism=2)))
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return dict(base=base, config=config, overrides=overrides, points=points, result=result,
              inline_rows=inline_rows, before=before)


@pytest.mark.slow
def test_local_launch_gives_the_inline_table(launched):
  s = launched
  result = s["result"]
  assert result.submitted == ["lr=0.003"] and result.done  # the finished point: not submitted
  assert len(result.job_ids) == 1
  assert [(r["status"], r["steps"]) for r in result.rows] == [("finished", 10)] * 2
  assert _table(result.rows) == _table(s["inline_rows"])
  assert _table(sweep.merge(s["base"])) == _table(s["inline_rows"])
  # The interrupted point resumed from its step-5 checkpoint in the job.
  after = train.read_metrics(s["points"][1].workdir)
  assert after[:len(s["before"])] == s["before"]
  assert [r["step"] for r in after if "loss" in r] == [5, 10]
  assert os.path.isdir(os.path.join(s["base"], launch.SUBMITIT_DIR))


@pytest.mark.slow
def test_relaunch_submits_nothing(launched):
  s = launched

  class NoSubmission:
    def map_array(self, *args):
      raise AssertionError("a finished sweep submitted jobs")

  again = launch.run_sweep(s["config"], s["overrides"], s["base"], launch.Training("local"),
                           executor=NoSubmission())
  assert again.submitted == [] and again.job_ids == [] and again.done
  assert _table(again.rows) == _table(s["inline_rows"])


def test_job_groups(tmp_path):
  config = _config()
  points = sweep.make_points(config, sweep_spec.product(sweep_spec.parse_spec(
      "model.cell=vanilla,lstm,gru;train.learning_rate=1e-3,3e-3", config)), str(tmp_path))
  slurm = launch.job_groups(points, "slurm", launch.Resources())
  assert [[p.name for p in g] for g in slurm] == [[p.name] for p in points]
  local = launch.job_groups(points, "local", launch.Resources(local_parallelism=4))
  assert [len(g) for g in local] == [2, 2, 1, 1]
  assert sorted(p.name for g in local for p in g) == sorted(p.name for p in points)
  assert launch.job_groups(points[:1], "local", launch.Resources(local_parallelism=4)) == [
      points[:1]]
  # A job's spec is plain JSON and rebuilds the point's config.
  spec = json.loads(json.dumps(sweep.point_spec(points[3])))
  assert spec["config"]["train"]["learning_rate"] == 0.003 and spec["name"] == points[3].name


def test_missing_submitit_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "submitit", None)
  with pytest.raises(RnnlabError, match="pip install submitit"):
    launch.require_submitit()


@pytest.mark.parametrize("field,value,flag", [
    ("time_min", 0, "slurm_time_min"), ("gpus_per_node", -1, "slurm_gpus_per_node"),
    ("array_parallelism", 0, "slurm_array_parallelism"), ("mem_gb", 0.0, "slurm_mem_gb"),
    ("local_parallelism", 0, "local_parallelism")])
def test_bad_resources_name_the_field(field, value, flag):
  with pytest.raises(ConfigError, match=f"^{field} must be") as e:
    launch.Resources(**{field: value}).check()
  assert "--" not in str(e.value)  # the library names its fields; the entry point the flags


def test_entry_point_names_the_resource_flag(tmp_path):
  """The library's `time_min` reaches the user of experiments.sweep as `--slurm_time_min`."""
  result = run_entry("experiments.sweep", "--config=configs/copy.py", f"--workdir={tmp_path}",
                     "--sweep=train.learning_rate=1e-3", "--launcher=local",
                     "--slurm_time_min=0")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "error: --slurm_time_min must be an integer >= 1, got 0" in result.stderr
  assert not os.listdir(tmp_path)  # refused before anything is written


def _fake_slurm(tmp_path, job_id: int = 4242) -> dict[str, str]:
  """An environment whose PATH has a fake `sbatch` (it copies the job file to tmp_path/job.sh
  and answers `job_id`), the `srun` submitit looks for to tell it is on a Slurm cluster, and a
  `sacct` that prints tmp_path/sacct.txt (only its header when there is none) and appends its
  arguments to tmp_path/sacct_calls.txt."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  sbatch = bin_dir / "sbatch"
  sbatch.write_text('#!/bin/sh\ncp "$1" "$FAKE_SBATCH_COPY"\n'
                    f'echo "Submitted batch job {job_id}"\n')
  srun = bin_dir / "srun"
  srun.write_text("#!/bin/sh\nexit 1\n")
  sacct = bin_dir / "sacct"
  sacct.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/sacct_calls.txt\n'
                   f'if [ -f {tmp_path}/sacct.txt ]; then cat {tmp_path}/sacct.txt; '
                   'else echo "JobID|State|NodeList"; fi\n')
  for tool in (sbatch, srun, sacct):
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
  return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
              PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
              FAKE_SBATCH_COPY=str(tmp_path / "job.sh"))


def test_readme_slurm_command_submits_the_array(tmp_path):
  """The README command, run with a fake `sbatch` on PATH: the sbatch file asks for the flags'
  resources, one array task per point, logs under DIR/submitit/."""
  readme = os.path.join(ROOT, "README.md")
  if os.path.exists(readme) and "Sweeps on a cluster" in open(readme).read():
    assert README_COMMAND in open(readme).read()
  workdir = tmp_path / "adding"
  args = shlex.split(README_COMMAND.replace("\\\n", " ").replace(README_WORKDIR, str(workdir)))
  assert args[:3] == ["python", "-m", "experiments.sweep"]
  env = _fake_slurm(tmp_path)
  result = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "4242_0" in result.stdout and "4242_5" in result.stdout
  assert f"python -m experiments.sweep --merge --workdir={workdir}" in result.stdout
  script = (tmp_path / "job.sh").read_text()
  for line in ["#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --cpus-per-task=4",
               "#SBATCH --gpus-per-node=1", "#SBATCH --mem=16GB", "#SBATCH --array=0-5%6",
               "#SBATCH --job-name=rnnlab-sweep"]:
    assert line in script, (line, script)
  assert re.search(rf"#SBATCH --output={re.escape(str(workdir))}/submitit/\S+", script)
  with open(workdir / "sweep.json") as f:
    assert len(json.load(f)["points"]) == 6
  assert "0 of 6 points finished" in (workdir / "sweep.md").read_text()


def test_a_shard_of_a_sweep_is_submitted_alone(tmp_path):
  """--num_shards/--shard_index pick the points a launcher submits, as they pick the points an
  inline sweep trains (was: refused with a launcher)."""
  workdir = tmp_path / "adding"
  result = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--config=configs/adding.py",
       f"--workdir={workdir}", "--sweep=train.learning_rate=1e-3,2e-3,3e-3,4e-3",
       "--launcher=slurm", "--num_shards=2", "--shard_index=1"],
      cwd=ROOT, env=_fake_slurm(tmp_path), capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "submitted 2 points as Slurm jobs 4242_0 4242_1\n" in result.stdout
  assert "#SBATCH --array=0-1%" in (tmp_path / "job.sh").read_text()
  with open(workdir / "sweep.json") as f:
    assert len(json.load(f)["points"]) == 4  # the whole sweep is recorded


def test_a_relaunch_submits_only_the_points_no_slurm_job_will_train(tmp_path):
  """Launching a Slurm sweep again while its jobs are queued submits only the points whose jobs
  ended unfinished (was: every unfinished point again, so queued points trained twice); sacct,
  asked once, says which jobs are alive; the new job ids are recorded for the next launch."""
  workdir = tmp_path / "adding"
  args = [sys.executable, "-m", "experiments.sweep", "--config=configs/adding.py",
          f"--workdir={workdir}", "--sweep=train.learning_rate=1e-3,2e-3,3e-3,4e-3",
          "--launcher=slurm"]
  first = subprocess.run(args, cwd=ROOT, env=_fake_slurm(tmp_path), capture_output=True,
                         text=True, timeout=120)
  assert first.returncode == 0, first.stderr[-2000:]
  assert "submitted 4 points as Slurm jobs 4242_0 4242_1 4242_2 4242_3\n" in first.stdout
  jobs_file = workdir / launch.SUBMITIT_DIR / launch.SLURM_JOBS_FILE
  with open(jobs_file) as f:
    recorded = json.load(f)
  assert sorted(recorded.values()) == ["4242_0", "4242_1", "4242_2", "4242_3"]

  # Tasks 0 and 1 wait in the queue, 2 runs, 3 hit its time limit.
  (tmp_path / "sacct.txt").write_text("JobID|State|NodeList\n4242_[0-1%16]|PENDING|None\n"
                                      "4242_2|RUNNING|n1\n4242_2.batch|RUNNING|n1\n"
                                      "4242_3|TIMEOUT|n1\n")
  again = subprocess.run(args, cwd=ROOT, env=_fake_slurm(tmp_path, job_id=4343),
                         capture_output=True, text=True, timeout=120)
  assert again.returncode == 0, again.stderr[-2000:]
  assert ("3 points are still queued or running as Slurm jobs 4242_0 4242_1 4242_2: "
          "not submitted again") in again.stdout
  assert "submitted 1 points as Slurm jobs 4343\n" in again.stdout  # an array of one is a job
  assert "#SBATCH --array" not in (tmp_path / "job.sh").read_text()
  assert (tmp_path / "sacct_calls.txt").read_text().count("\n") == 1  # one call for all four
  timed_out = next(name for name, job in recorded.items() if job == "4242_3")
  with open(jobs_file) as f:
    assert json.load(f) == {**recorded, timed_out: "4343"}

  # Every job ended (task 3's resubmission too, unfinished): all four are submitted again.
  (tmp_path / "sacct.txt").write_text("JobID|State|NodeList\n4242_[0-2]|FAILED|n1\n"
                                      "4343|CANCELLED by 1000|n1\n")
  third = subprocess.run(args, cwd=ROOT, env=_fake_slurm(tmp_path, job_id=4444),
                         capture_output=True, text=True, timeout=120)
  assert third.returncode == 0, third.stderr[-2000:]
  assert "submitted 4 points as Slurm jobs 4444_0 4444_1 4444_2 4444_3\n" in third.stdout
  assert "not submitted again" not in third.stdout


def test_a_damaged_record_of_slurm_jobs_is_one_error(tmp_path):
  """An unreadable slurm_jobs.json stops the launch with one line saying what to do; nothing is
  submitted."""
  workdir = tmp_path / "adding"
  (workdir / launch.SUBMITIT_DIR).mkdir(parents=True)
  (workdir / launch.SUBMITIT_DIR / launch.SLURM_JOBS_FILE).write_text('{"p": 4242')
  result = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--config=configs/adding.py",
       f"--workdir={workdir}", "--sweep=train.learning_rate=1e-3", "--launcher=slurm"],
      cwd=ROOT, env=_fake_slurm(tmp_path), capture_output=True, text=True, timeout=120)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert re.search(r"error: cannot read \S+slurm_jobs.json \(.*\); delete it to submit every "
                   r"unfinished point again", result.stderr), result.stderr
  assert not (tmp_path / "job.sh").exists()


def test_a_study_with_bad_launch_settings_writes_nothing(tmp_path):
  """The launcher's settings are checked before the study writes its manifest (was: sweep.json
  written, with a session that trained nothing, at every failed attempt)."""
  from configs import compare
  from rnnlab.studies import memory_study
  workdir = tmp_path / "study"
  bad = launch.Training(launcher="slurm", resources=launch.Resources(time_min=0))
  with pytest.raises(ConfigError, match="time_min must be an integer >= 1, got 0"):
    memory_study.run(compare.get_config("quick"), str(workdir), str(workdir), "TEST",
                     training=bad)
  with pytest.raises(ConfigError, match="parallel must be an integer >= 1"):
    memory_study.run(compare.get_config("quick"), str(workdir), str(workdir), "TEST",
                     training=launch.Training(parallel=0))
  assert not workdir.exists()


def test_diverged_points_are_not_submitted_again(tmp_path):
  point = sweep.Point("p", (), str(tmp_path / "p"), _config())
  os.makedirs(point.workdir)
  with open(os.path.join(point.workdir, sweep.DIVERGED_FILE), "w") as f:
    json.dump({"step": 3, "message": "loss is nan"}, f)
  assert sweep.is_done(point)
  assert launch.pending_points([point]) == []


def test_memory_study_submits_its_points_to_slurm(tmp_path):
  """experiments.compare --launcher=slurm: one array task per grid point, a report naming the
  unfinished points at once, and the command that rebuilds it when the jobs are done."""
  workdir = tmp_path / "study"
  args = ["-m", "experiments.compare", "--config=configs/compare.py:quick",
          f"--workdir={workdir}", "--launcher=slurm", "--slurm_array_parallelism=3"]
  result = subprocess.run([sys.executable, *args], cwd=ROOT, env=_fake_slurm(tmp_path),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "#SBATCH --array=0-3%3" in (tmp_path / "job.sh").read_text()
  assert (f"python -m experiments.compare --config=configs/compare.py:quick --workdir={workdir} "
          "--launcher=slurm --slurm_array_parallelism=3 --from_workdirs") in result.stdout
  report = (workdir / "compare.md").read_text()
  assert "launcher=slurm, at most 3 jobs at once" in report
  assert "; 0 of 4 points finished" in report
  with open(workdir / "sweep.json") as f:
    assert len(json.load(f)["points"]) == 4
  assert not list(workdir.glob("*/config.json"))  # nothing trained here


@pytest.mark.slow
def test_gradient_flow_study_submits_its_runs_then_reports_on_the_rerun(tmp_path):
  """experiments.gradient_flow --launcher=slurm submits one array task per cell and draws nothing
  yet; once the runs are finished (trained here), the same command draws the plot."""
  train_dir = tmp_path / "flow"
  args = [sys.executable, "-m", "experiments.gradient_flow", "--config=configs/adding.py",
          "--config.task.length=5", "--config.model.hidden_size=8", "--config.train.batch_size=8",
          "--cells=vanilla,gru", "--train_steps=4", "--num_examples=4", f"--train_dir={train_dir}",
          "--launcher=slurm"]
  env = _fake_slurm(tmp_path)
  result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "#SBATCH --array=0-1%" in (tmp_path / "job.sh").read_text()  # one task per cell
  assert "run the same command again when they are done to draw the plot" in result.stdout
  assert not (train_dir / "gradient_flow.png").exists()
  # The jobs' work, done here: the same points trained inline; the Slurm command then submits
  # nothing and draws the plot from them.
  inline = [a for a in args if a != "--launcher=slurm"] + ["--parallel=1"]
  assert subprocess.run(inline, cwd=ROOT, env=env, capture_output=True,
                        timeout=300).returncode == 0
  (tmp_path / "job.sh").unlink()
  again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert not (tmp_path / "job.sh").exists()  # nothing submitted
  assert json.loads(again.stdout.strip().splitlines()[-1]) == {
      "plot": str(train_dir / "gradient_flow.png")}


@pytest.mark.slow
def test_gradient_flow_study_in_shards(tmp_path):
  """--num_shards=2: each shard trains its cell only; the plot comes once both are finished."""
  train_dir = tmp_path / "flow"
  args = [sys.executable, "-m", "experiments.gradient_flow", "--config=configs/adding.py",
          "--config.task.length=5", "--config.model.hidden_size=8", "--config.train.batch_size=8",
          "--cells=vanilla,gru", "--train_steps=4", "--num_examples=4", f"--train_dir={train_dir}",
          "--num_shards=2"]
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  first = subprocess.run(args + ["--shard_index=0"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert first.returncode == 0, first.stderr[-2000:]
  assert "are not finished" in first.stdout and not (train_dir / "gradient_flow.png").exists()
  assert (train_dir / "vanilla" / "summary.json").exists()
  assert not (train_dir / "gru").exists()
  second = subprocess.run(args + ["--shard_index=1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert second.returncode == 0, second.stderr[-2000:]
  assert json.loads(second.stdout.strip().splitlines()[-1]) == {
      "plot": str(train_dir / "gradient_flow.png")}
