r"""Trains a model on a task from a config file; resumes if the workdir has checkpoints.

  python -m experiments.train --config=configs/copy.py --workdir=/tmp/copy \
      --config.model.cell=gru --config.task.length=50
"""

from absl import app, flags
from ml_collections import config_flags

from rnnlab import cli, distributed, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config, metrics and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  distributed.initialize_from_flags()
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
