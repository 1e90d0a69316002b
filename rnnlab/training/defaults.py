"""Every knob of rnnlab with its default: each configs/*.py starts from `get_config()` and
overrides what its experiment changes. `rnnlab.training.config_check.validate` checks a config
once at start.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.task = ml_collections.ConfigDict()
  config.task.name = "copy"
  config.task.length = 20          # copy: delay T; adding: sequence length T
  config.task.min_length = 0       # > 0 and < length: variable lengths in [min_length, length]
  # None: the task's own (copy: recall accuracy >= 0.99; adding: MSE < 0.01).
  config.task.solved_threshold = config_dict.placeholder(float)

  config.model = ml_collections.ConfigDict()
  config.model.cell = "lstm"
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.bidirectional = False
  config.model.dropout_rate = 0.0
  config.model.embed_size = 16     # token inputs only
  # The deep form (rnnlab.models.RecurrentEncoder): residual connections around every layer
  # (inputs projected to the model width first) and a normalisation before each layer.
  config.model.residual = False
  config.model.norm = "none"               # none | layer (LayerNorm) | rms (RMSNorm)
  # Cell options: each cell takes the ones it understands (rnnlab.models.make_cell).
  config.model.activation = "tanh"         # vanilla
  config.model.input_init = "glorot"       # glorot | lecun
  config.model.recurrent_init = "orthogonal"  # orthogonal (per gate) | identity | glorot
  config.model.recurrent_scale = 1.0
  config.model.forget_bias = 1.0           # lstm
  config.model.reset_after = True          # gru
  config.model.init = "standard"           # standard | chrono (lstm, gru)
  config.model.chrono_t_max = 100.0
  # Parallel-in-time cells (mingru, minlstm, lru: rnnlab.core.linear_cells).
  config.model.scan_method = "auto"        # sequential | associative | auto (per backend)
  config.model.r_min = 0.9                 # lru: |lambda| uniform in the ring [r_min, r_max]
  config.model.r_max = 0.999
  config.model.max_phase = 6.283185307179586  # lru: phase of lambda in [0, max_phase]

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 5000
  config.train.batch_size = 64
  config.train.num_seeds = 1       # independent replicas in one program
  config.train.seed_map = "auto"   # vmap | map (lax.map) | auto: map on CPU, vmap elsewhere
  config.train.optimizer = "adam"  # adam | adamw | sgd
  config.train.momentum = 0.0      # sgd only (0: plain SGD)
  config.train.learning_rate = 3e-3
  config.train.weight_decay = 0.0  # adamw only
  config.train.schedule = "constant"  # constant | warmup_cosine
  config.train.warmup_steps = 100
  config.train.grad_clip = 1.0     # global-norm clipping; 0 disables
  config.train.log_every = 100
  config.train.eval_every = 500
  config.train.eval_batches = 4
  config.train.eval_batch_size = 256
  config.train.checkpoint_every = 1000
  config.train.keep_checkpoints = 3
  config.train.stop_when_solved = True
  config.train.on_nonfinite = "stop"  # stop | skip (skip the update, keep training)
  return config
