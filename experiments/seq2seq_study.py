r"""The seq2seq bottleneck, measured: exact match vs source length with and without attention.

  python -m experiments.seq2seq_study              # none, additive, dot: ~10 min on 2 CPU cores
  python -m experiments.seq2seq_study --variants=none,additive --config.train.num_steps=2000
  python -m experiments.seq2seq_study --results_dir=experiments/results   # the committed report

Trains one model per attention variant (configs/seq2seq.py, `model.attention` set per variant)
into --workdir_root/<variant> (sweep points: in --parallel worker processes, or submitit jobs with
--launcher) and writes the table and plots to --results_dir (default: --workdir_root); see
`rnnlab.studies.seq2seq_study`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import cli
from rnnlab.errors import RnnlabError
from rnnlab.models import seq2seq
from rnnlab.studies import seq2seq_study

_CONFIG = config_flags.DEFINE_config_file("config", "configs/seq2seq.py",
                                          "Base config; model.attention is set per variant.",
                                          lock_config=True)
_WORKDIR_ROOT = flags.DEFINE_string("workdir_root", "/tmp/rnnlab_seq2seq_study",
                                    "One workdir per variant is made under this directory.")
_VARIANTS = flags.DEFINE_list("variants", ["none", "additive", "dot"],
                              f"Attention variants to train, of {list(seq2seq.ATTENTION_KINDS)}.")
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Where the table and plots are written (default: --workdir_root); "
    "experiments/results regenerates the committed report.")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 8,
                                     "Held-out batches (config.train.eval_batch_size each) for "
                                     "the final per-length evaluation.")
_TRAINING = cli.define_launch_flags("variants")
_MACHINE = flags.DEFINE_string("machine", "2 CPU cores", "Machine description for the report.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  command = "python -m experiments.seq2seq_study " + " ".join(sys.argv[1:])
  try:
    results = seq2seq_study.run_study(
        _CONFIG.value, _WORKDIR_ROOT.value, _VARIANTS.value, _RESULTS_DIR.value,
        _EVAL_BATCHES.value, _MACHINE.value, command.strip(), training=_TRAINING())
  except RnnlabError as e:
    raise cli.as_flags(e, {**cli.LAUNCH_FLAGS, "variants": "variants"}) from None
  if results is None:
    print(f"Some variants in {_WORKDIR_ROOT.value} are not finished (other shards, or Slurm "
          f"jobs: logs in {_WORKDIR_ROOT.value}/submitit); run the same command again when they "
          "are done to evaluate them and write the report.")

if __name__ == "__main__":
  cli.run(main)
