r"""Reloads the latest checkpoint of a run and prints one JSON line of metrics (never trains).

  python -m experiments.evaluate --workdir=/tmp/copy [--best] [--eval_batches=8]
"""

import json

from absl import app, flags

from experiments import cli
from rnnlab.errors import RnnlabError
from rnnlab.training import evaluation

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_BEST = flags.DEFINE_bool("best", False, "Restore the best checkpoint instead of the latest.")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", None,
                                     "Number of fresh evaluation batches (default: config's).")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    metrics = evaluation.evaluate_workdir(_WORKDIR.value, best=_BEST.value,
                                          eval_batches=_EVAL_BATCHES.value)
  except RnnlabError as e:
    raise cli.as_flags(e, ("eval_batches",)) from None
  print(json.dumps(metrics))


if __name__ == "__main__":
  cli.run(main)
