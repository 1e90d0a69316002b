"""How sweeps and studies train their points: here in worker processes, or as submitit jobs.

`train_points` is the one way a study or a sweep trains its points, as a `Training` says: this
shard's points (`sweep.shard`), the finished and diverged ones skipped (`sweep.is_done`), the
others "inline" (`sweep.run_points`, in `parallel` worker processes here) or submitted as one job
array through submitit. `run_sweep` is a sweep's entry: it makes, validates and records every
point (`sweep.start_sweep`), trains them with `train_points` and writes the table. The launchers:

  * "slurm": one array task per point (`sbatch --array=0-N%parallelism`), resources from
    `Resources`, logs in base_workdir/submitit/. It returns at once with the job ids; the table
    is rebuilt by `sweep.merge(base_workdir)` (`experiments.sweep --merge`) when they are done.
    Each point's array task is recorded (base_workdir/submitit/slurm_jobs.json), so launching
    again while jobs are queued or running submits only the points no job will train (sacct
    says which jobs are still alive).
  * "local": the pending points split into at most `Resources.local_parallelism` jobs (every
    k-th point, as `sweep.shard`), each a local process (submitit's LocalExecutor) that runs its
    points one after another; it waits for them.

A job is `run_job(specs)`: a top-level function of plain data (each point's name, overrides,
workdir and resolved config as a dict), so it pickles without Flax or JAX objects. Each point
is an ordinary run in its workdir (`sweep.run_point`), so a job that was killed or timed out
resumes its point from the latest checkpoint when the sweep is launched again, and the table is
built by the same code whatever trained the points: it is the same table.

Jobs inherit the environment of the process that submits them (LocalExecutor starts them with
it; sbatch exports it by default): JAX_PLATFORMS, XLA_FLAGS and the compilation cache are set
in a job exactly when they are set in the launching shell.
"""

from __future__ import annotations

import dataclasses
import json
import os
from types import ModuleType
from typing import Any, Callable, Sequence

import filelock
import ml_collections
from absl import logging

from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.studies import sweep
from rnnlab.training import run_folder

LAUNCHERS = ("inline", "local", "slurm")
SUBMITIT_DIR = "submitit"  # under base_workdir: pickled jobs, sbatch files, logs
SLURM_JOBS_FILE = "slurm_jobs.json"  # under SUBMITIT_DIR: {point name: its Slurm array task}
# sacct's states of a job that has not ended, so may still train its point.
_ALIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                           "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "STOPPED",
                           "SIGNALING", "STAGE_OUT"})


@dataclasses.dataclass(frozen=True)
class Resources:
  """What each job asks for.

  Attributes:
    partition: Slurm partition (None: the cluster's default).
    time_min: wall-time limit of one job, in minutes (Slurm and local).
    cpus_per_task: CPU cores per job (Slurm).
    gpus_per_node: GPUs per job (Slurm; 0 for CPU-only runs).
    mem_gb: memory per job in GB (None: the partition's default).
    array_parallelism: at most this many array tasks run at once (Slurm).
    local_parallelism: at most this many local processes (the points are split among them).
    job_name: the Slurm job name.
  """

  partition: str | None = None
  time_min: int = 60
  cpus_per_task: int = 4
  gpus_per_node: int = 0
  mem_gb: float | None = None
  array_parallelism: int = 16
  local_parallelism: int = 2
  job_name: str = "rnnlab-sweep"

  def check(self) -> None:
    """ConfigError naming the field of the first bad value."""
    for field, low in [("time_min", 1), ("cpus_per_task", 1), ("gpus_per_node", 0),
                       ("array_parallelism", 1), ("local_parallelism", 1)]:
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    if self.mem_gb is not None and not self.mem_gb > 0:
      raise ConfigError(f"mem_gb must be > 0, got {self.mem_gb!r}")


@dataclasses.dataclass(frozen=True)
class Training:
  """How a study trains its points (`train_points`).

  Attributes:
    launcher: "inline" trains here, in `parallel` worker processes; "local" or "slurm" submits
      the unfinished points as submitit jobs asking for `resources`.
    parallel: worker processes of the inline launcher.
    resources: what each submitted job asks for.
    num_shards, shard_index: train only this shard's points (`sweep.shard`).
  """

  launcher: str = "inline"
  parallel: int = 1
  resources: Resources = Resources()
  num_shards: int = 1
  shard_index: int = 0

  def check(self) -> None:
    """ConfigError (or RnnlabError: no submitit) for settings that cannot train, before a study
    writes anything."""
    if self.launcher not in LAUNCHERS:
      raise ConfigError(f"unknown launcher={self.launcher!r}; choose one of "
                        f"{', '.join(LAUNCHERS)}")
    sweep.check_parallel(self.parallel)
    sweep.check_shard(self.num_shards, self.shard_index)
    if self.launcher != "inline":
      self.resources.check()
      require_submitit()

  def at_once(self, num_points: int) -> int:
    """At most how many of `num_points` points train at the same time."""
    limit = {"inline": self.parallel, "local": self.resources.local_parallelism,
             "slurm": self.resources.array_parallelism}[self.launcher]
    return min(limit, max(num_points, 1))


@dataclasses.dataclass
class Trained:
  """What `train_points` (and `run_sweep`) did.

  Attributes:
    done: every point is finished or diverged, so the study can go on to its analysis (False
      while other shards or Slurm jobs have points left).
    submitted: names of the points submitted as jobs (launchers "local" and "slurm"; the
      finished and diverged ones are not).
    job_ids: one submitit job id per job ("1234_0", ... on Slurm).
    queued: Slurm only: the points not submitted again because the job an earlier launch
      submitted for them is still queued or running, with that job's id.
    rows: `run_sweep` only: the sweep's table as it stands.
  """

  done: bool
  submitted: list[str] = dataclasses.field(default_factory=list)
  job_ids: list[str] = dataclasses.field(default_factory=list)
  queued: dict[str, str] = dataclasses.field(default_factory=dict)
  rows: list[dict[str, Any]] | None = None


def require_submitit() -> ModuleType:
  """The submitit module, or a RnnlabError saying how to install it."""
  try:
    import submitit  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise RnnlabError("launcher=local and launcher=slurm need submitit: "
                      "pip install submitit") from None
  return submitit


def make_executor(launcher: str, folder: str, resources: Resources) -> Any:
  """A submitit executor ("local" or "slurm") that writes its files under `folder`; the
  settings were checked by `Training.check`."""
  submitit = require_submitit()
  try:
    executor = submitit.AutoExecutor(folder=folder, cluster=launcher)
  except RuntimeError as e:  # no `srun` on PATH: not on a Slurm cluster
    raise RnnlabError(f"launcher=slurm: {e} Run it where sbatch and srun work (a login "
                      "node), or use launcher=local") from None
  params: dict[str, Any] = dict(name=resources.job_name, timeout_min=resources.time_min)
  if launcher == "slurm":
    params.update(cpus_per_task=resources.cpus_per_task,
                  gpus_per_node=resources.gpus_per_node,
                  slurm_array_parallelism=resources.array_parallelism)
    if resources.partition:
      params["slurm_partition"] = resources.partition
    if resources.mem_gb is not None:
      params["mem_gb"] = resources.mem_gb
  executor.update_parameters(**params)
  return executor


def run_job(specs: Sequence[dict[str, Any]]) -> list[str]:
  """The body of one job: runs its points one after another (each resumes from its checkpoints,
  a finished one is skipped). Returns "ran" or "skipped" per point."""
  done = []
  for spec in specs:
    done.append("skipped" if sweep.run_point(sweep.point_from_spec(spec)) is None else "ran")
  return done


def job_groups(points: Sequence[sweep.Point], launcher: str, resources: Resources
               ) -> list[list[sweep.Point]]:
  """The points of each job: one per point on Slurm; at most `local_parallelism` jobs locally."""
  if not points:
    return []
  if launcher == "slurm":
    return [[p] for p in points]
  num_jobs = min(len(points), resources.local_parallelism)
  return [sweep.shard(points, num_jobs, i) for i in range(num_jobs)]


def pending_points(points: Sequence[sweep.Point]) -> list[sweep.Point]:
  """The points neither finished nor diverged (`sweep.is_done`). A finished one must hold a run of
  its own config (ConfigError otherwise, as in an in-process sweep)."""
  from rnnlab.training import train  # pylint: disable=import-outside-toplevel

  pending = []
  for point in points:
    if sweep.status(point) == "finished":
      train.prepare_workdir(point.config, point.workdir, write=False)
    elif not sweep.is_done(point):
      pending.append(point)
  return pending


def check_not_in_use(points: Sequence[sweep.Point], training: Training) -> None:
  """The inline launcher: RnnlabError (naming the process) if another process trains one of
  this shard's unfinished points now, say a second run of the same study, before anything is
  recorded or trained. (Submitting launchers skip this: their own jobs hold the points.)"""
  if training.launcher != "inline":
    return
  for point in sweep.shard(points, training.num_shards, training.shard_index):
    if not sweep.is_done(point):
      run_folder.check_not_in_use(point.workdir)


def _slurm_jobs_path(base_workdir: str) -> str:
  return os.path.join(base_workdir, SUBMITIT_DIR, SLURM_JOBS_FILE)


def _recorded_slurm_jobs(base_workdir: str) -> dict[str, str]:
  """{point name: Slurm job id} of earlier launches; RnnlabError for a damaged record."""
  path = _slurm_jobs_path(base_workdir)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, ValueError) as e:
    raise RnnlabError(f"cannot read {path} ({e}); delete it to submit every unfinished point "
                      "again (first cancel the sweep's Slurm jobs that are still queued)") from None
  if not (isinstance(recorded, dict)
          and all(isinstance(v, str) for v in recorded.values())):
    raise RnnlabError(f"{path} is not a map of point names to Slurm job ids; delete it to submit "
                      "every unfinished point again (first cancel the sweep's queued jobs)")
  return recorded


def alive_slurm_jobs(points: Sequence[sweep.Point], base_workdir: str) -> dict[str, str]:
  """{point name: job id} for those of `points` whose Slurm job, submitted by an earlier launch,
  has not ended (pending, running, requeued, ... as sacct says, in one call for all of them). A
  job sacct does not know (purged from its records, or no accounting) counts as ended: a second
  job for the same point then finds its run folder locked and fails, and nothing is lost."""
  recorded = _recorded_slurm_jobs(base_workdir)
  names = {p.name for p in points} & set(recorded)
  if not names:
    return {}
  submitit = require_submitit()
  folder = os.path.join(base_workdir, SUBMITIT_DIR)
  jobs = {name: submitit.SlurmJob(folder=folder, job_id=recorded[name]) for name in sorted(names)}
  next(iter(jobs.values())).get_info(mode="force")  # one sacct call answers for every job
  alive = {}
  for name, job in jobs.items():
    state = job.watcher.get_state(job.job_id, mode="cache").split()
    if state and state[0].upper() in _ALIVE_STATES:
      alive[name] = job.job_id
  return alive


def _wait(jobs: Sequence[Any], groups: Sequence[Sequence[sweep.Point]]) -> None:
  """Waits for every local job; RnnlabError naming the points and logs of the failed ones."""
  submitit = require_submitit()
  failed = []
  for job, group in zip(jobs, groups):
    try:
      job.result()
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as e:
      last = [line for line in str(e).splitlines() if line.strip()]
      failed.append(f"{', '.join(p.name for p in group)} (job {job.job_id}: "
                    f"{last[-1] if last else 'no error message'}; log {job.paths.stderr})")
  if failed:
    raise RnnlabError(f"{len(failed)} of {len(jobs)} sweep jobs failed: " + "; ".join(failed)
                      + ". Fix the cause and launch the sweep again: finished points are "
                      "skipped and the others resume from their checkpoints.")


def _submit(points: Sequence[sweep.Point], base_workdir: str, training: Training,
            executor: Any) -> Trained:
  """Submits the unfinished of `points` as one job array; "local" waits for the jobs
  (RnnlabError naming the failed points and their logs), "slurm" returns after submission."""
  submitit = require_submitit()
  pending = pending_points(points)
  queued = alive_slurm_jobs(pending, base_workdir) if training.launcher == "slurm" else {}
  if queued:
    logging.info("%d points are still queued or running as Slurm jobs %s: not submitted again",
                 len(queued), " ".join(sorted(set(queued.values()))))
  pending = [p for p in pending if p.name not in queued]
  groups = job_groups(pending, training.launcher, training.resources)
  if not groups:
    return Trained(done=not queued, queued=queued)
  if executor is None:
    executor = make_executor(training.launcher, os.path.join(base_workdir, SUBMITIT_DIR),
                             training.resources)
  specs = [[sweep.point_spec(p) for p in group] for group in groups]
  try:
    jobs = executor.map_array(run_job, specs)
  except submitit.core.utils.FailedJobError as e:  # sbatch refused (partition, limits, ...)
    raise RnnlabError(f"could not submit the sweep's {len(specs)} jobs: {e}".strip()) from None
  job_ids = [str(job.job_id) for job in jobs]
  if training.launcher == "slurm":
    path = _slurm_jobs_path(base_workdir)
    with filelock.FileLock(f"{path}.lock"):  # shards launched at once each add their jobs
      run_folder.atomic_write(path, json.dumps(
          {**_recorded_slurm_jobs(base_workdir), **{p.name: j for p, j in zip(pending, job_ids)}},
          indent=2, sort_keys=True))
  logging.info("submitted %d points as %s jobs %s (logs: %s)", len(pending), training.launcher,
               " ".join(job_ids), os.path.join(base_workdir, SUBMITIT_DIR))
  if training.launcher == "local":
    _wait(jobs, groups)
  return Trained(done=False, submitted=[p.name for p in pending], job_ids=job_ids, queued=queued)


def train_points(points: Sequence[sweep.Point], base_workdir: str,
                 training: Training = Training(),
                 run: Callable[[sweep.Point], Any] = sweep.run_point,
                 executor: Any = None) -> Trained:
  """Trains this shard's unfinished points (under base_workdir) as `training` says.

  "inline" runs them here with `run`, in `training.parallel` worker processes
  (`sweep.run_points`); "local" and "slurm" submit them as submitit jobs ("local" waits for
  them, "slurm" returns at once; `executor` replaces the one `make_executor` would build, for
  tests). A finished point is never trained again, so running the study again once its other
  shards or its Slurm jobs are done goes on to its analysis: `Trained.done`.
  """
  training.check()
  check_not_in_use(points, training)
  mine = sweep.shard(points, training.num_shards, training.shard_index)
  if training.launcher == "inline":
    sweep.run_points(mine, run, parallel=training.parallel)
    trained = Trained(done=False)
  else:
    trained = _submit(mine, base_workdir, training, executor)
  return dataclasses.replace(trained, done=all(sweep.is_done(p) for p in points))


def merge_command(base_workdir: str) -> str:
  """The command that rebuilds a sweep's table from its workdirs."""
  return f"python -m experiments.sweep --merge --workdir={base_workdir}"


def run_sweep(config: ml_collections.ConfigDict, overrides_list: Sequence[sweep.Overrides],
              base_workdir: str, training: Training = Training(),
              run: Callable[[sweep.Point], Any] = sweep.run_point, executor: Any = None
              ) -> Trained:
  """A sweep: makes, validates and records every point (`sweep.start_sweep`; ConfigError, and
  nothing written, for a bad point or bad `training`; RnnlabError, and nothing written, when
  another process trains one of its points, `check_not_in_use`), trains this shard's
  unfinished points (`train_points`) and writes the table of the whole sweep (`sweep.merge`:
  points of other shards, or of Slurm jobs still running, show their current status). `run`
  and `executor`: as in `train_points`.
  """
  training.check()
  points = sweep.start_sweep(config, overrides_list, base_workdir,
                             before_writing=lambda made: check_not_in_use(made, training))
  trained = train_points(points, base_workdir, training, run, executor)
  return dataclasses.replace(trained, rows=sweep.merge(base_workdir))
