r"""Trains a model on a task from a config file; resumes if the workdir has checkpoints.

  python -m experiments.train --config=configs/copy.py --workdir=/tmp/copy \
      --config.model.cell=gru --config.task.length=50
"""

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.errors import ConfigError
from rnnlab.training import distributed, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config, metrics and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-host runs (jax.distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes (hosts) in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index in [0, num_processes).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ConfigError as e:
    raise cli.as_flags(e, ("coordinator_address", "num_processes", "process_id")) from None
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
