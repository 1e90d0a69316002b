r"""Speed of rnnlab's training step and forward pass against flax.linen and PyTorch on this machine.

  python -m experiments.benchmark            # full run -> experiments/results/benchmark.md
  python -m experiments.benchmark --quick --output=/tmp/b.md   # one small shape, few repeats

For each cell (lstm, gru, vanilla) and shape (batch, time, input, hidden), in ONE process:
  * rnnlab: `models.RNNModel(models.RecurrentEncoder(...))`, the model `rnnlab.training.train` builds, with a
    per-step Dense readout over `--classes` classes, cross-entropy, optax Adam, `jax.jit`;
  * flax.linen: `nn.RNN` over `OptimizedLSTMCell` / `GRUCell` / `SimpleCell`, same readout, loss and
    optimiser;
  * PyTorch (optional): `nn.LSTM` / `nn.GRU` / `nn.RNN` + `nn.Linear`, `torch.optim.Adam`.
The three are timed in interleaved rounds (one call of each per round, `block_until_ready`), and
the median over rounds is reported, so background load hits them alike; ratios are peer / rnnlab
(> 1: rnnlab faster). Compile time is lower + compile of the jitted step. "peak" is the fraction
of a large float32 matmul's rate achieved by the recurrent layer's FLOPs,
2 * B * T * (input + hidden) * gates * hidden * 3 for forward + backward.

The seeds section times `rnnlab.training.train.Trainer.train_step` with `train.num_seeds` = 8 and 1 on the
copy task at (batch 16, time 500, input 10, hidden 64).

The parallel suite (`--suites=parallel` alone rewrites only its section of the report) times the
training step of minGRU, minLSTM and LRU with each `model.scan_method` (sequential, associative,
auto) against the LSTM and GRU at batch 64, input 10, hidden 128, T in {100, 1024, 4096}:

  python -m experiments.benchmark --suites=parallel
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from configs import base as base_config
from experiments import cli
from rnnlab import models
from rnnlab.core import cells, linear_recurrence
from rnnlab.training import train

_QUICK = flags.DEFINE_bool("quick", False, "One small shape and few repeats (for the tests).")
_OUTPUT = flags.DEFINE_string("output", "experiments/results/benchmark.md",
                              "Markdown report path ('' to skip).")
_REPEATS = flags.DEFINE_integer("repeats", 15, "Interleaved timing rounds per measurement.")
_CELLS = flags.DEFINE_list("cells", ["lstm", "gru", "vanilla"], "Cells to benchmark.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Readout classes (per-step cross-entropy).")
_TORCH = flags.DEFINE_bool("torch", True, "Include PyTorch (skipped with a note if absent).")
_SUITES = flags.DEFINE_list(
    "suites", ["classic", "parallel"],
    "classic: --cells against flax and PyTorch at SHAPES (+ seeds); parallel: minGRU, minLSTM "
    "and LRU with each scan method against LSTM and GRU at PARALLEL_TIMES. A run of only "
    "'parallel' replaces that section of an existing --output and keeps the rest.")
_SEEDS = flags.DEFINE_bool("seeds", True, "Time Trainer.train_step with 8 seeds against 1 "
                           "(with --quick only when given explicitly).")

SHAPES = [(64, 100, 10, 128), (128, 200, 10, 256), (16, 500, 10, 64), (256, 50, 32, 512)]
QUICK_SHAPES = [(8, 20, 4, 16)]
SEEDS_SHAPE = (16, 500, 10, 64)
QUICK_SEEDS_SHAPE = (4, 30, 10, 8)
# The parallel-in-time suite: (batch, input, hidden), the lengths, and timing rounds per length.
PARALLEL_SHAPE, PARALLEL_TIMES = (64, 10, 128), (100, 1024, 4096)
QUICK_PARALLEL_SHAPE, QUICK_PARALLEL_TIMES = (8, 4, 16), (20, 64)
PARALLEL_CELLS = ("mingru", "minlstm", "lru")
PARALLEL_HEADING = "## Parallel-in-time cells: minGRU, minLSTM and LRU against LSTM and GRU"


# What was tried while making rnnlab fast, appended to the report (kept here so the report is
# regenerated whole by one command).
NOTES = """## How rnnlab's layer is run, and what was tried

`models.RecurrentEncoder` runs each layer with `rnnlab.core.fused.layer` (set `fused=False` for the
per-example `jax.vmap(recurrent.stack)` reference; both give the same numbers, see
tests/test_fused.py). The fused layer is a `jax.custom_vjp` over the whole batch: the forward scan
saves the activated gates, the backward scan carries only the state cotangents and emits per-step
gate cotangents, and the weight gradients are one contraction over time * batch rows per gate.

All timings below were taken on this 2-core machine while 3-4 other jobs ran (load average 8-13),
so they are inflated and noisy; every comparison was made in one process, interleaved, and is
quoted as CPU ms (process time, median) unless marked wall. LSTM, (64, 100, 10, 128) unless said.

Kept (each measured against the variant before it):
- Separate [T, B, H] arrays per gate for the residuals and the backward's gate cotangents, instead
  of one packed [T, B, 4H] array: XLA:CPU's pointwise fusions that read column slices of a
  dynamically sliced packed array ran 2-4x slower (LSTM backward pointwise + matmul, 100 steps:
  19.8 -> 11.0 ms; pointwise alone on slices vs separate arrays: 9.8 -> 2.8 ms).
- Four [B, H] x [H, H] matmuls per step for dh_{t-1} (one per gate) rather than concatenating the
  gate cotangents for one [B, 4H] x [4H, H] matmul: equal or slightly better (12.2 vs 13.6 ms for
  the backward loop), and no concatenation.
- Weight gradients as leading-axis contractions of [x_t, h_{t-1}, 1] with each gate's cotangents
  (one dot per gate gives dW_i, dW_h and db): 10.3 ms vs 14.1 ms for transposing the operands to
  [features, N] first; separate dots for dW_i, dW_h and sums for db: 12.1 ms.
- Batch-major inputs and outputs read/written one step at a time in place, residuals time-major:
  removes the [B, T, H] <-> [T, B, H] transposes (forward 9.9 -> 9.0 ms; under load a partitioned
  transpose could wait 20+ ms wall for a second thread). Carrying the residual and cotangent
  buffers batch-major instead was slower (backward loop 13.0 -> 18.0 ms).
- Selects (not 0/1-mask products) at padded steps, and padded inputs zeroed before dW_i, so
  non-finite padding cannot reach any gradient.
- Net effect on the layer's gradient (forward + backward, no readout), same process: fused 40.5 ms
  vs 45.5 ms for autodiff of the vmapped reference (GRU: 25.8-27.8 vs about 30); on the whole
  train step at (64,100,10,128) 53.7 vs 62.2 ms (LSTM) and 48.6 vs 57.8 ms (GRU), and at
  (128,200,10,256) 635 vs 705 ms (LSTM).

Tried and dropped:
- Hoisting the input projection out of the scan (one [T*B, I] x [I, 4H] matmul, per-step slices
  read inside the loop): forward 9.5 -> 20.4 ms, training step 43.7 -> 46.6 ms. As reported
  before for the plain scan, XLA:CPU's per-step slicing of the large precomputed array costs more
  than the small in-loop matmul it saves.
- Writing the backward's cotangents in place over the residual buffers (fori_loop that reads and
  then updates the same carried buffer): XLA copies the buffer every iteration, 5x slower.
- Packing all forward residuals (gates, h, c) into one per-step output: slower (63.5 vs 55.1 ms).
- sigmoid as 0.5 tanh(x/2) + 0.5, or one sigmoid over the full [B, 4H] block with the g gate
  rescaled (tanh(x) = 2 sigmoid(2x) - 1): within noise (8.6-12.4 vs 10.0 ms for the pointwise
  part), not kept.
- XLA flags (xla_cpu_use_onednn, xla_cpu_use_xnnpack=false, xla_cpu_multi_thread_eigen=false,
  xla_cpu_prefer_vector_width=512, xla_cpu_enable_fast_math): no consistent change beyond the
  noise of the loaded machine; the library sets none.
- glibc malloc tuning (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD at 1 GiB) removes about 9000
  page faults (~10 ms of system time) per LSTM training step at the first shape, because XLA
  allocates its large temporaries afresh at every call; it is process-wide, so the benchmark does
  not apply it to anyone.

What limits it: the in-loop matmuls run at 110-150 GFLOP/s on one core, but zero-initialised scan
output buffers (JAX fills every stacked output with zeros before the loop: about 100 ms of a
635 ms step at (128,200,10,256) under load), the pointwise work and the per-step operations add
about as much again. PyTorch's LSTM runs oneDNN's fused RNN kernels.

At a quieter moment (load average 1.7), one process, LSTM (64, 100, 10, 128), wall ms median:
train rnnlab 41.2, vmapped reference 46.5, flax 47.1, PyTorch with 2 threads 32.5 (its CPU time
was 61 ms: it used both cores); forward 10.3 / 8.8 / 8.6 / 6.1. XLA:CPU runs a while loop's body
on one thread: two independent scans in one program, or 2 or 4 independent dots per step, took the
sum of their times, and YNNPACK does not split these small matmuls across cores, while PyTorch's
MKL/oneDNN GEMMs do. That is most of the remaining gap to PyTorch on an idle 2-core machine; on
a loaded one PyTorch is fastest with 1 thread and the gap narrows to 0.8-0.97x.

Seeds: with `train.num_seeds` = 8 the Trainer vmaps the step, so every matmul becomes a batched
one and every residual array 8x larger. At (16, 500, 10, 64) 8 seeds cost 7-9x one seed with the
fused layer (16.1x with the vmapped reference, in a separate loaded-machine run): the work grows
with the seeds, so the 2x target is not met.
PyTorch timings use the faster of nproc and 1 intra-op threads (column "torch threads"): with the
default OpenMP busy-waiting, 2 threads on this loaded machine ran 20x slower than 1.
"""


# ----------------------------------------------------------------------------- timing

def _median_ms(samples: list[float]) -> float:
  return 1e3 * statistics.median(samples)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2
                ) -> dict[str, float]:
  """Median wall milliseconds of each fn, timed in rounds that call every fn once in turn."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  samples: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn()
      samples[name].append(time.perf_counter() - t0)
  return {k: _median_ms(v) for k, v in samples.items()}


def matmul_peak_gflops(repeats: int, n: int = 2048) -> float:
  """float32 GFLOP/s of a large jnp matmul (median over repeats)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  ms = interleaved({"mm": lambda: f(a).block_until_ready()}, repeats)["mm"]
  return 2.0 * n ** 3 / (ms * 1e-3) / 1e9


def recurrent_flops(cell: str, shape: tuple[int, int, int, int]) -> float:
  """FLOPs of the recurrent layer's forward + backward matmuls: 2 B T (I + H) G H * 3."""
  b, t, i, h = shape
  return 2.0 * b * t * (i + h) * cells.get(cell).num_gates * h * 3


# ----------------------------------------------------------------------------- JAX peers

@dataclasses.dataclass
class JaxStep:
  """A jitted train step and forward pass of one linen model, with its state."""

  train: Callable[[], None]
  forward: Callable[[], None]
  compile_s: float


def make_jax_step(model: nn.Module, xs: jax.Array, ys: jax.Array) -> JaxStep:
  """Adam train step (per-step cross-entropy) and forward pass of `model` on (xs, ys)."""
  params = model.init(jax.random.key(1), xs)["params"]
  tx = optax.adam(1e-3)

  def loss_fn(p, x, y):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(p, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = tx.init(params)
  t0 = time.perf_counter()
  step_c = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, xs, ys).compile()
  compile_s = time.perf_counter() - t0
  fwd_c = jax.jit(lambda p, x: model.apply({"params": p}, x)).lower(params, xs).compile()
  state = [params, opt_state]

  def run_train():
    p, o, loss = step_c(state[0], state[1], xs, ys)
    loss.block_until_ready()
    state[0], state[1] = p, o

  def run_forward():
    fwd_c(state[0], xs).block_until_ready()

  return JaxStep(run_train, run_forward, compile_s)


def rnnlab_model(cell: str, hidden: int, classes: int, scan_method: str | None = None
                 ) -> nn.Module:
  """The model `rnnlab.training.train.build_model` builds for float features and a per-step readout,
  with the base config's cell options (and `scan_method` for the parallel-in-time cells)."""
  m = base_config.get_config().model
  m.update(cell=cell, hidden_size=hidden)
  if scan_method is not None:
    m.scan_method = scan_method
  return models.RNNModel(models.encoder_from_config(m), out_features=classes, readout="per_step")


class FlaxModel(nn.Module):
  """flax.linen's own recurrent layer and cells, with the same readout."""

  cell: str
  hidden: int
  classes: int

  @nn.compact
  def __call__(self, xs: jax.Array) -> jax.Array:
    make = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "vanilla": nn.SimpleCell}[self.cell]
    ys = nn.RNN(make(self.hidden))(xs)
    return nn.Dense(self.classes)(ys)


class ReadoutOnly(nn.Module):
  """The benchmark's model with the recurrent layer replaced by a Dense of the same width: what
  the embedding/readout, loss and optimiser cost alone (the floor under every cell's step)."""

  hidden: int
  classes: int

  @nn.compact
  def __call__(self, xs: jax.Array) -> jax.Array:
    return nn.Dense(self.classes)(nn.Dense(self.hidden)(xs))


# ----------------------------------------------------------------------------- PyTorch peer

def torch_module():
  try:
    import torch  # noqa: PLC0415 (optional dependency)
  except ImportError:
    return None
  return torch


def make_torch_step(torch, cell: str, shape: tuple[int, int, int, int], classes: int,
                    xs: np.ndarray, ys: np.ndarray
                    ) -> tuple[Callable[[], None], Callable[[], None]]:
  """Train step (Adam) and no-grad forward of nn.LSTM / nn.GRU / nn.RNN + nn.Linear."""
  _, _, i, h = shape
  rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "vanilla": torch.nn.RNN}[cell]

  class Model(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.rnn = rnn(i, h, batch_first=True)
      self.readout = torch.nn.Linear(h, classes)

    def forward(self, x):
      return self.readout(self.rnn(x)[0])

  model = Model()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = torch.from_numpy(np.array(xs))
  y = torch.from_numpy(np.array(ys)).long().reshape(-1)

  def run_train():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, classes), y)
    loss.backward()
    opt.step()

  def run_forward():
    with torch.no_grad():
      model(x)

  return run_train, run_forward


# ----------------------------------------------------------------------------- one cell, one shape

@dataclasses.dataclass
class Row:
  cell: str
  shape: tuple[int, int, int, int]
  ms: dict[str, float]           # "<impl> train" / "<impl> forward" -> median ms
  compile_s: dict[str, float]    # impl -> seconds
  torch_threads: int | None
  peak_fraction: float


def bench_one(cell: str, shape: tuple[int, int, int, int], classes: int, repeats: int, torch,
              peak_gflops: float) -> Row:
  b, t, i, h = shape
  xs = jax.random.normal(jax.random.key(0), (b, t, i), jnp.float32)
  ys = jax.random.randint(jax.random.key(1), (b, t), 0, classes)
  rn = make_jax_step(rnnlab_model(cell, h, classes), xs, ys)
  fl = make_jax_step(FlaxModel(cell, h, classes), xs, ys)
  train_fns = {"rnnlab": rn.train, "flax": fl.train}
  fwd_fns = {"rnnlab": rn.forward, "flax": fl.forward}
  threads = None
  if torch is not None:
    tt, tf = make_torch_step(torch, cell, shape, classes, np.asarray(xs), np.asarray(ys))
    threads = _pick_torch_threads(torch, tt)
    train_fns["torch"], fwd_fns["torch"] = tt, tf
  ms = {f"{k} train": v for k, v in interleaved(train_fns, repeats).items()}
  ms.update({f"{k} forward": v for k, v in interleaved(fwd_fns, repeats).items()})
  frac = recurrent_flops(cell, shape) / (ms["rnnlab train"] * 1e-3) / 1e9 / peak_gflops
  return Row(cell, shape, ms, {"rnnlab": rn.compile_s, "flax": fl.compile_s}, threads, frac)


# ----------------------------------------------------------------------------- parallel cells

def bench_parallel(time_steps: int, shape: tuple[int, int, int], classes: int, repeats: int
                   ) -> dict[tuple[str, str], tuple[float, float]]:
  """Training-step time of LSTM, GRU and each parallel-in-time cell with each scan method.

  shape: (batch, input, hidden). Returns {(cell, method): (median ms, compile s)}; method is
  "step" for rnnlab's LSTM/GRU (the fused step-by-step layer) and "flax" for flax.linen's
  nn.RNN over OptimizedLSTMCell (a plain `lax.scan` LSTM).
  """
  b, i, h = shape
  xs = jax.random.normal(jax.random.key(0), (b, time_steps, i), jnp.float32)
  ys = jax.random.randint(jax.random.key(1), (b, time_steps), 0, classes)
  variants = [("lstm", "step"), ("lstm", "flax"), ("gru", "step"), ("none", "readout only")] + [
      (c, m) for c in PARALLEL_CELLS for m in linear_recurrence.METHODS]

  def model(cell: str, method: str) -> nn.Module:
    if method == "flax":  # a plain-scan LSTM (flax.linen nn.RNN), for scale
      return FlaxModel(cell, h, classes)
    if cell == "none":    # the floor: the same step without a recurrence
      return ReadoutOnly(h, classes)
    return rnnlab_model(cell, h, classes, None if method == "step" else method)

  steps = {v: make_jax_step(model(*v), xs, ys) for v in variants}
  ms = interleaved({v: step.train for v, step in steps.items()}, repeats, warmup=1)
  return {v: (ms[v], steps[v].compile_s) for v in variants}


def format_parallel(results: dict[int, dict[tuple[str, str], tuple[float, float]]],
                    shape: tuple[int, int, int]) -> str:
  """The table (ms per training step, ratio to the LSTM at the same T) and the targets."""
  b, i, h = shape
  lines = [f"Training step (forward + backward + Adam, per-step readout), batch {b}, input {i}, "
           f"hidden {h}; median wall ms; x LSTM = this step / the LSTM step at the same T. "
           f"Method `step`: rnnlab's fused step-by-step layer for the classic cells; `flax`: "
           f"flax.linen `nn.RNN` over `OptimizedLSTMCell` (a plain `lax.scan` LSTM); `none / "
           f"readout only`: the same step with the recurrent layer replaced by a Dense layer (the "
           f"floor under every cell: input, readout, loss and Adam); `auto` is "
           f"`{linear_recurrence.choose_method(1024)}` on this backend "
           f"({jax.default_backend()}).", "",
           "| T | cell | method | train ms | x LSTM | compile s |", "|---|---|---|---|---|---|"]
  for t, res in results.items():
    lstm = res[("lstm", "step")][0]
    for (cell, method), (ms, compile_s) in res.items():
      lines.append(f"| {t} | {cell} | {method} | {ms:.1f} | {ms / lstm:.3f} | {compile_s:.2f} |")
  lines += ["", "Targets of the issue, on this run:", ""]
  if 1024 in results:
    res = results[1024]
    floor = res[("none", "readout only")][0]
    rec = {c: res[(c, m)][0] - floor for c, m in (("lstm", "step"), ("mingru", "auto"))}
    lines.append(f"- At T=1024 the step without any recurrence costs {floor:.1f} ms "
                 f"({floor / res[('lstm', 'step')][0]:.3f}x the LSTM step); above that floor the "
                 f"minGRU's recurrence costs {rec['mingru']:.1f} ms and the LSTM's "
                 f"{rec['lstm']:.1f} ms ({rec['mingru'] / rec['lstm']:.3f}x)")
  if 1024 in results:
    res = results[1024]
    r = res[("mingru", "auto")][0] / res[("lstm", "step")][0]
    r_flax = res[("mingru", "auto")][0] / res[("lstm", "flax")][0]
    lines.append(f"- minGRU step <= 0.25x the LSTM step at T=1024: {r:.3f}x rnnlab's fused LSTM, "
                 f"{'met' if r <= 0.25 else 'NOT met'} ({r_flax:.3f}x flax's plain-scan LSTM)")
  worst = max(((res[(c, "auto")][0] / min(res[(c, "sequential")][0], res[(c, "associative")][0]),
                c, t) for t, res in results.items() for c in PARALLEL_CELLS))
  lines.append(f"- `auto` never more than 10% slower than the better method: worst "
               f"{worst[0]:.3f}x ({worst[1]} at T={worst[2]}), "
               f"{'met' if worst[0] <= 1.10 else 'NOT met'}")
  return "\n".join(lines)


def run_parallel_suite(quick: bool, repeats: int, classes: int) -> str:
  """Times the parallel suite and returns its report section (heading, provenance, table)."""
  shape = QUICK_PARALLEL_SHAPE if quick else PARALLEL_SHAPE
  times = QUICK_PARALLEL_TIMES if quick else PARALLEL_TIMES
  load_start, started = _load(), datetime.datetime.now().astimezone()
  results = {}
  for t in times:
    # Rounds shrink with T (a T=4096 LSTM step takes seconds); at least 3.
    results[t] = bench_parallel(t, shape, classes, max(3, repeats * 100 // t))
    print(f"parallel T={t}: " + ", ".join(f"{c}/{m} {v[0]:.1f} ms"
                                          for (c, m), v in results[t].items()), flush=True)
  return "\n".join([
      PARALLEL_HEADING, "",
      f"- command: `python -m experiments.benchmark {' '.join(sys.argv[1:])}`".rstrip(),
      f"- date: {started.isoformat(timespec='seconds')}; load average at start {load_start}, "
      f"at end {_load()}",
      "", format_parallel(results, shape), ""])


def _pick_torch_threads(torch, step: Callable[[], None]) -> int:
  """PyTorch's faster setting of intra-op threads: all cores, or 1.

  On a loaded machine OpenMP's spinning barriers can make nproc threads many times slower than
  one; taking the faster keeps the comparison fair to PyTorch.
  """
  best, best_ms = 1, float("inf")
  for n in sorted({os.cpu_count() or 1, 1}, reverse=True):
    torch.set_num_threads(n)
    ms = interleaved({"t": step}, 3, warmup=1)["t"]
    if ms < best_ms:
      best, best_ms = n, ms
  torch.set_num_threads(best)
  return best


# ----------------------------------------------------------------------------- seeds

def bench_seeds(shape: tuple[int, int, int, int], repeats: int) -> dict[str, float]:
  """Median ms of Trainer.train_step with num_seeds = 1 and 8 (copy task, embed = input)."""
  b, t, i, h = shape
  out = {}
  steps = {}
  for seeds in (1, 8):
    config = base_config.get_config()
    config.task.name = "copy"
    config.task.length = t - 20     # the copy input is length + 20 steps
    config.model.cell = "lstm"
    config.model.hidden_size = h
    config.model.embed_size = i
    config.train.batch_size = b
    config.train.num_seeds = seeds
    trainer = train.Trainer(config)
    state = [trainer.init()]
    t0 = time.perf_counter()
    compiled = trainer.train_step.lower(state[0]).compile()
    out[f"compile {seeds}"] = time.perf_counter() - t0

    def run(compiled=compiled, state=state):
      state[0], metrics = compiled(state[0])
      jax.block_until_ready(metrics)

    steps[seeds] = run
  ms = interleaved({f"{k} seeds": v for k, v in steps.items()}, repeats)
  out.update(ms)
  return out


# ----------------------------------------------------------------------------- report

def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _load() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def format_table(rows: list[Row], with_torch: bool) -> str:
  head = ["cell", "B,T,I,H", "rnnlab train ms", "flax train ms"]
  if with_torch:
    head += ["torch train ms"]
  head += ["flax/rnnlab train"]
  if with_torch:
    head += ["torch/rnnlab train"]
  head += ["rnnlab fwd ms", "flax fwd ms"]
  if with_torch:
    head += ["torch fwd ms"]
  head += ["flax/rnnlab fwd"]
  if with_torch:
    head += ["torch/rnnlab fwd", "torch threads"]
  head += ["compile s rnnlab", "compile s flax", "peak frac"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    m = r.ms
    values = [r.cell, ",".join(map(str, r.shape)), f"{m['rnnlab train']:.1f}",
             f"{m['flax train']:.1f}"]
    if with_torch:
      values += [f"{m['torch train']:.1f}"]
    values += [f"{m['flax train'] / m['rnnlab train']:.2f}"]
    if with_torch:
      values += [f"{m['torch train'] / m['rnnlab train']:.2f}"]
    values += [f"{m['rnnlab forward']:.2f}", f"{m['flax forward']:.2f}"]
    if with_torch:
      values += [f"{m['torch forward']:.2f}"]
    values += [f"{m['flax forward'] / m['rnnlab forward']:.2f}"]
    if with_torch:
      values += [f"{m['torch forward'] / m['rnnlab forward']:.2f}", str(r.torch_threads)]
    values += [f"{r.compile_s['rnnlab']:.2f}", f"{r.compile_s['flax']:.2f}",
              f"{100 * r.peak_fraction:.1f}%"]
    lines.append("| " + " | ".join(values) + " |")
  return "\n".join(lines)


def format_seeds(seeds: dict[str, float], shape: tuple[int, int, int, int]) -> str:
  ratio = seeds["8 seeds"] / seeds["1 seeds"]
  return ("| Trainer.train_step, copy task, LSTM, B,T,I,H = "
          f"{','.join(map(str, shape))} | 1 seed | 8 seeds | 8 / 1 |\n|---|---|---|---|\n"
          f"| median ms | {seeds['1 seeds']:.1f} | {seeds['8 seeds']:.1f} | {ratio:.2f} |\n"
          f"| compile s | {seeds['compile 1']:.2f} | {seeds['compile 8']:.2f} | |")


def format_targets(rows: list[Row], seeds: dict[str, float] | None, with_torch: bool) -> str:
  """The issue's speed targets, checked against this run's numbers."""
  by = {(r.cell, r.shape): r for r in rows}
  lines = ["| target | measured | met |", "|---|---|---|"]

  def add(name: str, value: float, ok: bool, fmt: str = "{:.2f}") -> None:
    lines.append(f"| {name} | {fmt.format(value)} | {'yes' if ok else 'no'} |")

  for cell in ("lstm", "gru"):
    for shape in SHAPES[:2]:
      r = by.get((cell, shape))
      if r is None:
        continue
      s = ",".join(map(str, shape))
      if with_torch:
        v = r.ms["torch train"] / r.ms["rnnlab train"]
        add(f"{cell} {s} train: torch/rnnlab >= 1.25", v, v >= 1.25)
      v = r.ms["flax train"] / r.ms["rnnlab train"]
      add(f"{cell} {s} train: flax/rnnlab >= 1.5", v, v >= 1.5)
    r = by.get((cell, SHAPES[2]))
    if r is not None:
      s = ",".join(map(str, SHAPES[2]))
      for peer in (("torch", "flax") if with_torch else ("flax",)):
        v = r.ms[f"{peer} train"] / r.ms["rnnlab train"]
        add(f"{cell} {s} train: {peer}/rnnlab >= 1", v, v >= 1.0)
  if with_torch:
    worst = min(rows, key=lambda r: r.ms["torch forward"] / r.ms["rnnlab forward"])
    v = worst.ms["torch forward"] / worst.ms["rnnlab forward"]
    add(f"forward: torch/rnnlab >= 1 at every shape (worst: {worst.cell} "
        f"{','.join(map(str, worst.shape))})", v, v >= 1.0)
  slowest = max(r.compile_s["rnnlab"] for r in rows)
  add("rnnlab compile < 3 s at every shape (slowest)", slowest, slowest < 3.0, "{:.2f} s")
  if seeds is not None:
    v = seeds["8 seeds"] / seeds["1 seeds"]
    add("8 seeds / 1 seed <= 2", v, v <= 2.0)
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  quick = _QUICK.value
  repeats = 3 if quick else _REPEATS.value
  # --quick runs the classic suite only, unless --suites is given.
  suites = _SUITES.value if not quick or flags.FLAGS["suites"].present else ["classic"]
  for suite in suites:
    if suite not in ("classic", "parallel"):
      raise app.UsageError(f"--suites: {suite!r} is not one of: classic, parallel")
  parallel = run_parallel_suite(quick, repeats, _CLASSES.value) if "parallel" in suites else None
  if parallel is not None:
    print(parallel)
  if "classic" not in suites:
    if _OUTPUT.value:
      _replace_parallel_section(_OUTPUT.value, parallel)
    return
  shapes = QUICK_SHAPES if quick else SHAPES
  # --quick keeps the test under a minute on a loaded 2-core machine: one cell unless named.
  cell_names = (["lstm"] if quick and not flags.FLAGS["cells"].present else _CELLS.value)
  torch = torch_module() if _TORCH.value else None
  torch_note = ("" if torch is not None else
                "PyTorch column skipped: " + ("--notorch" if not _TORCH.value
                                              else "torch is not installed") + ".")
  load_start = _load()
  started = datetime.datetime.now().astimezone()
  peak = matmul_peak_gflops(3 if quick else 10, 512 if quick else 2048)
  rows = []
  for shape in shapes:
    for cell in cell_names:
      row = bench_one(cell, shape, _CLASSES.value, repeats, torch, peak)
      rows.append(row)
      print(f"{cell} {shape}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in row.ms.items()),
            flush=True)
  seeds_shape = QUICK_SEEDS_SHAPE if quick else SEEDS_SHAPE
  # Two Trainer compiles take longer than the rest of --quick: only when asked for by name.
  with_seeds = _SEEDS.value and (not quick or flags.FLAGS["seeds"].present)
  seeds = bench_seeds(seeds_shape, 3 if quick else 10) if with_seeds else None
  load_end = _load()

  table = format_table(rows, torch is not None)
  parts = [table]
  if seeds is not None:
    parts.append(format_seeds(seeds, seeds_shape))
  if not quick:
    parts.append("Targets of the issue, on this run:\n\n"
                 + format_targets(rows, seeds, torch is not None))
  print("\n\n".join(parts))
  if torch_note:
    print(torch_note)
  if _OUTPUT.value:
    _write_report(_OUTPUT.value, parts, torch, torch_note, peak, load_start, load_end, started)
    if parallel is not None:
      _replace_parallel_section(_OUTPUT.value, parallel)


def _replace_parallel_section(path: str, section: str) -> None:
  """Puts `section` at the end of the report at `path` in place of its previous version."""
  text = open(path).read() if os.path.exists(path) else "# rnnlab benchmark\n"
  text = text.split(PARALLEL_HEADING)[0].rstrip("\n") + "\n\n" + section
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  print(f"wrote {path}")


def _write_report(path: str, parts: list[str], torch, torch_note: str, peak: float,
                  load_start: str, load_end: str, started: datetime.datetime) -> None:
  versions = (f"python {platform.python_version()}, jax {jax.__version__}, "
              f"flax {flax.__version__}, optax {optax.__version__}, numpy {np.__version__}"
              + (f", torch {torch.__version__}" if torch is not None else ""))
  header = [
      "# rnnlab benchmark: training step and forward pass vs flax.linen and PyTorch",
      "",
      f"- command: `python -m experiments.benchmark {' '.join(sys.argv[1:])}`".rstrip(),
      f"- date: {started.isoformat(timespec='seconds')}",
      f"- machine: {os.cpu_count()} cores (nproc), {_cpu_model()}, {platform.platform()}",
      f"- versions: {versions}; JAX backend {jax.default_backend()}",
      f"- load average (1, 5, 15 min) at start: {load_start}; at end: {load_end}",
      f"- float32 matmul peak (2048^3 jnp matmul): {peak:.1f} GFLOP/s",
      "- times: median wall ms over interleaved rounds (rnnlab, flax, torch called in turn);"
      " ratios are peer / rnnlab (> 1: rnnlab is faster).",
  ]
  if torch_note:
    header.append(f"- {torch_note}")
  body = "\n".join(header) + "\n\n## Results\n\n" + "\n\n".join(parts) + "\n"
  body += "\n" + NOTES
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(body)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
