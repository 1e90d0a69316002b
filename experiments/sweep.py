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
_MERGE = flags.DEFINE_bool("merge", False, "Only rebuild the table from the workdirs.")
_TRAINING = cli.define_launch_flags()
flags.mark_flags_as_required(["workdir"])


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
    training = _TRAINING()
    try:
      trained = launch.run_sweep(config, overrides, _WORKDIR.value, training)
    except RnnlabError as e:
      raise cli.as_flags(e, cli.LAUNCH_FLAGS) from None
    if training.launcher == "slurm" and (trained.submitted or trained.queued):
      if trained.queued:
        print(f"{len(trained.queued)} points are still queued or running as Slurm jobs "
              f"{' '.join(sorted(set(trained.queued.values())))}: not submitted again")
      if trained.submitted:
        print(f"submitted {len(trained.submitted)} points as Slurm jobs "
              f"{' '.join(trained.job_ids)}")
      print(f"logs: {os.path.join(_WORKDIR.value, launch.SUBMITIT_DIR)}; when the jobs are "
            f"done, build the table with:\n  {launch.merge_command(_WORKDIR.value)}")
      return
  print(os.path.join(_WORKDIR.value, sweep.TABLE_MD))


if __name__ == "__main__":
  cli.run(main)
