r"""Sequence-to-sequence translation (digits -> English words), with or without attention.

  python -m experiments.train --config=configs/seq2seq.py --workdir=/tmp/s2s_att
  python -m experiments.train --config=configs/seq2seq.py --workdir=/tmp/s2s_none \
      --config.model.attention=none
  python -m experiments.seq2seq_study   # both, plus the bottleneck plots

model.attention: "none" (the decoder sees only the encoder's final state), "additive" (Bahdanau)
or "dot" (Luong, general score). See rnnlab/seq2seq.py and rnnlab/tasks/translation.py.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task.name = "translation"
  config.task.length = 12          # most source digits (<= 18)
  config.task.min_length = 1       # source lengths stratified over [min_length, length]
  # None: exact match >= 0.99.

  config.model.cell = "lstm"
  config.model.hidden_size = 64    # per direction
  config.model.num_layers = 1
  config.model.bidirectional = True
  config.model.embed_size = 32
  config.model.attention = "additive"  # none | additive | dot
  config.model.attention_size = 64

  config.train.num_steps = 4000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.schedule = "warmup_cosine"
  config.train.warmup_steps = 100
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.eval_batches = 2
  config.train.eval_batch_size = 240   # a multiple of the 12 source lengths
  config.train.checkpoint_every = 500
  config.train.stop_when_solved = False
  return config
