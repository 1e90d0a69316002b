r"""Character-level language model: embedding -> LSTM -> per-step softmax over characters.

Trains on the Python Language Reference text shipped with CPython (no download) or any UTF-8
file, reports bits per character on held-out text, and samples with `experiments.generate`:

  python -m experiments.train --config=configs/charlm.py --workdir=/tmp/charlm
  python -m experiments.train --config=configs/charlm.py --workdir=/tmp/lm2 \
      --config.task.path=my_book.txt --config.model.num_layers=2
  python -m experiments.generate --workdir=/tmp/charlm --prompt="The blue ship" --length=200 \
      --temperature=0.8 --plot=/tmp/next_char.png
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task.name = "charlm"
  # A UTF-8 text file, or "builtin:python-reference" (CPython's pydoc_data topics).
  config.task.path = "builtin:python-reference"
  config.task.length = 100               # training window (characters); longest eval window
  config.task.min_length = 20            # eval windows: lengths in [min_length, length], masked
  config.task.validation_fraction = 0.1  # the trailing part of the text held out
  # None: bpc 0, i.e. never solved: train the whole budget.

  config.model.cell = "lstm"
  config.model.hidden_size = 256
  config.model.num_layers = 1
  config.model.embed_size = 32

  config.train.num_steps = 2000   # ~6 min on 2 CPU cores
  config.train.batch_size = 32
  config.train.learning_rate = 3e-3
  config.train.schedule = "warmup_cosine"
  config.train.warmup_steps = 100
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.eval_batches = 4
  config.train.eval_batch_size = 64
  config.train.checkpoint_every = 500
  return config
