r"""Runs a hyperparameter sweep: one workdir per point, resumable, shardable, one results table.

  python -m experiments.sweep --config=configs/adding.py --workdir=/tmp/sweep \
      --sweep='model.cell=vanilla,lstm,gru;train.learning_rate=1e-3,3e-3'
  python -m experiments.sweep ... --num_shards=4 --shard_index=0     # every 4th point
  python -m experiments.sweep --merge --workdir=/tmp/sweep            # table from the workdirs
  python -m experiments.sweep ... --launcher=slurm --slurm_partition=gpu --slurm_gpus_per_node=1
      # one Slurm array task per unfinished point (submitit); then --merge when they are done
  python -m experiments.sweep ... --launcher=local --local_parallelism=2   # local processes

Without --sweep, the config file's `get_sweep()` gives the points. Re-running skips finished
points and resumes interrupted ones; the table is DIR/sweep.md and DIR/sweep.csv.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.studies import launch, sweep, sweep_spec

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_SWEEP = flags.DEFINE_string("sweep", None, "key=v1,v2;key2=v3,... (default: get_sweep() of "
                             "the config file).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Base directory: one sub-workdir per point.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Split the points into this many shards.")
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "Run the points of this shard only.")
_MERGE = flags.DEFINE_bool("merge", False, "Only rebuild the table from the workdirs.")
_LAUNCHER = flags.DEFINE_enum(
    "launcher", "inline", list(launch.LAUNCHERS),
    "inline: run the points in this process; local: as local processes through submitit; "
    "slurm: submit a Slurm job array through submitit (one task per unfinished point).")
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", None, "Slurm partition (default: the "
                                       "cluster's).")
_SLURM_TIME_MIN = flags.DEFINE_integer("slurm_time_min", 60, "Time limit of one job, minutes "
                                       "(slurm and local).")
_SLURM_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", 4, "CPU cores per Slurm task.")
_SLURM_GPUS = flags.DEFINE_integer("slurm_gpus_per_node", 0, "GPUs per Slurm task.")
_SLURM_MEM_GB = flags.DEFINE_float("slurm_mem_gb", None, "Memory per Slurm task, GB (default: "
                                   "the partition's).")
_SLURM_PARALLELISM = flags.DEFINE_integer("slurm_array_parallelism", 16, "At most this many "
                                          "Slurm array tasks at once.")
_LOCAL_PARALLELISM = flags.DEFINE_integer("local_parallelism", 2, "--launcher=local: at most "
                                          "this many processes (the points are split among them).")
_PARALLEL = flags.DEFINE_integer("parallel", os.cpu_count() or 1, "--launcher=inline: worker "
                                 "processes training the points (default: CPU cores).")
flags.mark_flags_as_required(["workdir"])
# launch.Resources' fields and launch_sweep's argument -> the flags that set them.
_LAUNCH_FLAGS = {"launcher": "launcher", "time_min": "slurm_time_min",
                 "cpus_per_task": "slurm_cpus_per_task", "gpus_per_node": "slurm_gpus_per_node",
                 "array_parallelism": "slurm_array_parallelism", "mem_gb": "slurm_mem_gb",
                 "local_parallelism": "local_parallelism"}


def _sweep_from_config_file() -> object:
  path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":", 1)[0]
  return cli.call_config_function("config", path, "get_sweep",
                                  missing=f"no --sweep given and {path} defines no get_sweep()")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _MERGE.value:
    sweep.merge(_WORKDIR.value)
  else:
    if _CONFIG.value is None:
      raise ConfigError("--config is required (unless --merge)")
    config = _CONFIG.value
    if _SWEEP.value is not None:
      overrides = sweep_spec.product(sweep_spec.parse_spec(_SWEEP.value, config))
    else:
      overrides = sweep_spec.from_sweep_object(_sweep_from_config_file(), config)
    if _LAUNCHER.value == "inline":
      try:
        sweep.run_sweep(config, overrides, _WORKDIR.value, _NUM_SHARDS.value, _SHARD_INDEX.value,
                        parallel=_PARALLEL.value)
      except RnnlabError as e:
        raise cli.as_flags(e, ("num_shards", "shard_index", "parallel")) from None
    else:
      if _NUM_SHARDS.value != 1:
        raise ConfigError("--num_shards splits an inline sweep; with --launcher="
                          f"{_LAUNCHER.value} every unfinished point is submitted (drop it)")
      try:
        launched = launch.launch_sweep(config, overrides, _WORKDIR.value, _LAUNCHER.value,
                                       _resources())
      except RnnlabError as e:
        raise cli.as_flags(e, _LAUNCH_FLAGS) from None
      if launched.rows is None:
        print(f"submitted {len(launched.submitted)} points as Slurm jobs "
              f"{' '.join(launched.job_ids)} (logs: "
              f"{os.path.join(_WORKDIR.value, launch.SUBMITIT_DIR)}); when they are done, "
              f"build the table with:\n  {launched.merge_command}")
        return
  print(os.path.join(_WORKDIR.value, sweep.TABLE_MD))


def _resources() -> launch.Resources:
  return launch.Resources(
      partition=_SLURM_PARTITION.value, time_min=_SLURM_TIME_MIN.value,
      cpus_per_task=_SLURM_CPUS.value, gpus_per_node=_SLURM_GPUS.value,
      mem_gb=_SLURM_MEM_GB.value, array_parallelism=_SLURM_PARALLELISM.value,
      local_parallelism=_LOCAL_PARALLELISM.value)


if __name__ == "__main__":
  cli.run(main)
