r"""The comparison study: cells x directions x tasks x lengths, seeds trained as one program.

  python -m experiments.compare --config=configs/compare.py --workdir=/tmp/compare
  python -m experiments.compare --config=configs/compare.py:quick --workdir=/tmp/compare_quick

Everything outside `config.compare` is an ordinary training config (configs/base.py) shared by
every grid point: the step budget is `train.num_steps`, the seeds per point `train.num_seeds`.
`config.compare` holds the grid; it is removed from each point's config, so changing the grid
never invalidates a finished point's workdir.

Default budget: hidden 64, batch 32, 3 seeds, at most 2000 steps per point, evaluation every 250
steps (a point stops early once every seed is solved). Measured first on this project's 2-core
machine while 4 other jobs shared it (load average ~8.5): seconds per step per time step with
3 seeds were LSTM 0.38 ms, GRU 0.49 ms, vanilla 0.10 ms unidirectional and LSTM 1.1 ms
bidirectional, and 10-15 s to compile a point; the 48 points then need ~2.5 h, which on the
same 2 cores unshared (~4x less contention) is ~40-60 min (an estimate, not measured). On the
shared machine a declared subset was run instead: 30 of the 48 points (all unidirectional ones
but copy T=200, and the bidirectional ones at copy T=10, 50 and adding T=50) in 51 min of wall
time; see experiments/results/compare.md for the commands.
"""

import ml_collections

from configs import base


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """`variant`: "" (the study) or "quick" (a tiny grid for tests, well under a minute)."""
  config = base.get_config()
  config.model.hidden_size = 64
  config.train.batch_size = 32
  config.train.num_seeds = 3
  config.train.num_steps = 2000          # the fixed step budget of every point
  config.train.learning_rate = 3e-3
  config.train.log_every = 50
  config.train.eval_every = 250
  config.train.eval_batches = 2
  config.train.eval_batch_size = 128
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 1
  config.train.stop_when_solved = True

  config.compare = ml_collections.ConfigDict()
  config.compare.cells = "vanilla,lstm,gru"
  config.compare.directions = "uni,bi"         # uni | bi
  config.compare.tasks = "copy,adding"
  config.compare.copy_lengths = "10,50,100,200"
  config.compare.adding_lengths = "50,100,200,400"

  if variant == "quick":
    config.model.hidden_size = 8
    config.train.batch_size = 8
    config.train.num_seeds = 2
    config.train.num_steps = 20
    config.train.log_every = 5
    config.train.eval_every = 10
    config.train.eval_batches = 1
    config.train.eval_batch_size = 16
    config.train.checkpoint_every = 10
    config.compare.cells = "vanilla,gru"
    config.compare.directions = "uni"
    config.compare.copy_lengths = "5"
    config.compare.adding_lengths = "10"
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/compare.py; use '' or 'quick'")
  return config
