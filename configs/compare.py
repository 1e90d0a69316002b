r"""The memory study: vanilla RNN, LSTM and GRU, uni- and bidirectional, on copy and adding.

  python -m experiments.compare --config=configs/compare.py --workdir=/tmp/compare
  python -m experiments.compare --config=configs/compare.py:quick --workdir=/tmp/cq   # tests

Everything outside `config.compare` is the training config every point shares; `config.compare`
holds the grid and `config.compare.overrides` the per-task step budgets. The memory horizon of a
cell is the longest T that 2 of its 3 seeds solve (copy: 99% held-out recall; adding: MSE < 0.01).

Why these settings: the literature's points must be solvable here. A 128-unit LSTM with Adam and
clipping learns copy at T=100 and the adding problem at T=100 in ~5K and T=200 in ~15K steps
(Arjovsky et al. 2016), so hidden 128, Adam 3e-3 with global-norm clip 1, batch 64, and budgets
of 10,000 steps on copy and 8,000 on adding, stopping a point once all its seeds are solved. The
pilot sweep behind the learning rate and the step budgets is experiments/results/pilot.md.
"""

import ml_collections

from configs import base


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """`variant`: "" (the study) or "quick" (a tiny grid for tests, well under a minute)."""
  config = base.get_config()
  config.model.hidden_size = 128
  config.train.batch_size = 64
  config.train.num_seeds = 3
  config.train.num_steps = 10000         # the largest budget; each task's is in `overrides`
  config.train.learning_rate = 3e-3
  config.train.log_every = 250
  config.train.eval_every = 250
  config.train.eval_batches = 2
  config.train.eval_batch_size = 128
  config.train.checkpoint_every = 1000
  config.train.keep_checkpoints = 1
  config.train.stop_when_solved = True

  config.compare = ml_collections.ConfigDict()
  config.compare.cells = "vanilla,lstm,gru"
  config.compare.directions = "uni,bi"         # uni | bi
  config.compare.tasks = "copy,adding"
  config.compare.copy_lengths = "10,20,50,100"
  config.compare.adding_lengths = "50,100,200,400"
  # True: train each task's lengths shortest first and leave out a cell's longer lengths once it
  # finished one unsolved (the long-delay study); False: every point of the grid (this study).
  config.compare.skip_past_horizon = False
  # Per task or cell label: sweep terms applied to those points ("key=value;key2=value2").
  config.compare.overrides = ml_collections.ConfigDict()
  config.compare.overrides.copy = "train.num_steps=10000"
  config.compare.overrides.adding = "train.num_steps=8000"

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
    config.compare.overrides.copy = "train.num_steps=20"
    config.compare.overrides.adding = "train.num_steps=20"
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/compare.py; use '' or 'quick'")
  return config
