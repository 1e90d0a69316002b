r"""The long-delay study: how far past the papers' LSTM baselines each cell remembers.

  python -m experiments.compare --config=configs/horizon.py --workdir=/tmp/horizon
  python -m experiments.compare --config=configs/horizon.py --workdir=/tmp/horizon \
      --from_workdirs                                         # the report only, no training

Writes experiments/results/horizon.md, horizon.csv and horizon_*.png (set by
`config.compare.name`). Cells: the vanilla tanh RNN, IRNN (Le et al. 2015), LSTM and GRU with
the standard and the chrono initialisation (Tallec & Ollivier 2018; `CELL:chrono` sets
model.init=chrono and model.chrono_t_max to the point's sequence length), and the
parallel-in-time minGRU, minLSTM and LRU. Copy at T in {200, 500, 1000}, adding at
T in {400, 600, 750, 1000}, unidirectional, 3 seeds per point in one program. A copy point
counts as solved at 100% held-out recall accuracy (`copy_solved_threshold`), an adding point
at MSE < 0.01.

Budget per point: at most 1000 steps, batch 32, hidden 64, Adam 3e-3, clip 1 (stopping early
once every seed is solved). A short budget next to the literature's (tens of thousands of steps):
a point "not solved" here says "not within 1000 steps", nothing more. Step times and the cost of
the committed run: the notes of experiments/results/horizon.md.
"""

import ml_collections

from configs import compare


def get_config() -> ml_collections.ConfigDict:
  config = compare.get_config()
  config.train.num_steps = 1000
  config.compare.name = "horizon"
  config.compare.title = ("Long-delay study: chrono and identity initialisation and the "
                          "parallel-in-time cells past the papers' LSTM baselines")
  config.compare.cells = ("vanilla,irnn,lstm,lstm:chrono,gru,gru:chrono,mingru,minlstm,lru")
  config.compare.directions = "uni"
  config.compare.tasks = "copy,adding"
  config.compare.copy_lengths = "200,500,1000"
  config.compare.adding_lengths = "400,600,750,1000"
  config.compare.copy_solved_threshold = 1.0   # 100% recall of the 10 symbols
  return config
