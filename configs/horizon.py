r"""The long-delay study: do chrono initialisation and the LRU move the copy and adding horizons
past the standard LSTM's and GRU's, and at what cost in steps and wall time?

  python -m experiments.compare --config=configs/horizon.py --workdir=/tmp/horizon

Fewer variants at real budgets: LSTM and GRU with the standard and the chrono initialisation
(Tallec & Ollivier 2018; `CELL:chrono` sets model.init=chrono and model.chrono_t_max to the point's
sequence length), the LRU, and IRNN (Le et al. 2015) trained as its paper trained it: plain SGD,
a small learning rate and clipping (a per-variant override; with the shared Adam 3e-3 it diverged
at every length). Copy at T in {100, 200, 500} solved at 100% held-out recall, adding at
T in {200, 400, 750} at MSE < 0.01; unidirectional, 3 seeds per point, stopping once solved.

The question is where each variant's horizon lies, so the study skips past it: each task's
lengths train shortest first, and a variant that finished a length with fewer than 2 of 3
seeds solved is not trained at the longer ones (`config.compare.skip_past_horizon`). A point
that cannot be solved runs its whole budget, so the longer lengths of a variant that fails a
shorter one would cost most of the study and tell nothing new.
"""

import ml_collections

from configs import compare


def get_config() -> ml_collections.ConfigDict:
  config = compare.get_config()
  config.compare.name = "horizon"
  config.compare.title = ("Long-delay study: chrono initialisation, the LRU and IRNN against the "
                          "standard LSTM and GRU")
  config.compare.cells = "irnn,lstm,lstm:chrono,gru,gru:chrono,lru"
  config.compare.directions = "uni"
  config.compare.tasks = "copy,adding"
  config.compare.copy_lengths = "100,200,500"
  config.compare.adding_lengths = "200,400,750"
  config.compare.copy_solved_threshold = 1.0   # 100% recall of the 10 symbols
  config.compare.skip_past_horizon = True
  config.compare.overrides.irnn = "train.optimizer=sgd;train.learning_rate=1e-4"
  return config
