r"""Speed of rnnlab's training step and forward pass against flax.linen and PyTorch on this machine.

  python -m experiments.benchmark --quick    # one small shape -> /tmp/rnnlab_benchmark/benchmark.md
  python -m experiments.benchmark --results_dir=experiments/results   # the committed report

Reports go to --results_dir/benchmark.md (default: rnnlab_benchmark under the system's temporary
directory) or to --output; only an explicit --results_dir=experiments/results (or
--output=experiments/results/benchmark.md) rewrites the committed report. A report that already
holds the notes section (how the layer is run and what was tried) keeps it.

For each cell (lstm, gru, vanilla) and shape (batch, time, input, hidden), in ONE process, the
models of `experiments.peers` (rnnlab's `RNNModel`, flax.linen's `nn.RNN`, PyTorch's modules, all
with the same readout, loss and Adam) are timed in interleaved rounds by `experiments.timing`;
ratios are peer / rnnlab (> 1: rnnlab faster). Compile time is lower + compile of the jitted
step. "peak" is the fraction of a large float32 matmul's rate achieved by the recurrent layer's
FLOPs, 2 * B * T * (input + hidden) * gates * hidden * 3 for forward + backward.

The seeds section times `rnnlab.training.train.Trainer.train_step` with `train.num_seeds` = 8 and
1 on the copy task at (batch 16, time 500, input 10, hidden 64).

The parallel suite (`--suites=parallel` alone rewrites only its section of the report) times the
training step of minGRU, minLSTM and LRU with each `model.scan_method` (sequential, associative,
auto) against the LSTM and GRU at batch 64, input 10, hidden 128, T in {100, 1024, 4096}:

  python -m experiments.benchmark --suites=parallel --results_dir=experiments/results
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
import tempfile
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from configs import base as base_config
from experiments import cli, peers, timing
from rnnlab.core import linear_recurrence
from rnnlab.training import run_files, train

REPORT_FILE = "benchmark.md"
_QUICK = flags.DEFINE_bool("quick", False, "One small shape and few repeats (for the tests).")
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", os.path.join(tempfile.gettempdir(), "rnnlab_benchmark"),
    f"Directory of the report ({REPORT_FILE}); experiments/results regenerates the committed one.")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown report path (default: "
                              f"--results_dir/{REPORT_FILE}; '' to skip).")
_REPEATS = flags.DEFINE_integer("repeats", 15, "Interleaved timing rounds per measurement.")
_CELLS = flags.DEFINE_list("cells", ["lstm", "gru", "vanilla"], "Cells to benchmark.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Readout classes (per-step cross-entropy).")
_TORCH = flags.DEFINE_bool("torch", True, "Include PyTorch (skipped with a note if absent).")
_SUITES = flags.DEFINE_list(
    "suites", ["classic", "parallel"],
    "classic: --cells against flax and PyTorch at SHAPES (+ seeds); parallel: minGRU, minLSTM "
    "and LRU with each scan method against LSTM and GRU at PARALLEL_TIMES. A run of only "
    "'parallel' replaces that section of an existing report and keeps the rest.")
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
# The lab notes of the committed report (experiments/results/benchmark.md): kept when it is
# regenerated, pointed to from any other report.
NOTES_HEADING = "## How rnnlab's layer is run, and what was tried"
NOTES_POINTER = (f"{NOTES_HEADING}\n\nSee the notes section of experiments/results/{REPORT_FILE}."
                 "\n")


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
  rn = peers.make_jax_step(peers.rnnlab_model(cell, h, classes), xs, ys)
  fl = peers.make_jax_step(peers.FlaxModel(cell, h, classes), xs, ys)
  train_fns = {"rnnlab": rn.train, "flax": fl.train}
  fwd_fns = {"rnnlab": rn.forward, "flax": fl.forward}
  threads = None
  if torch is not None:
    tt, tf = peers.make_torch_step(torch, cell, shape, classes, np.asarray(xs), np.asarray(ys))
    threads = peers.pick_torch_threads(torch, tt)
    train_fns["torch"], fwd_fns["torch"] = tt, tf
  ms = {f"{k} train": v for k, v in timing.interleaved(train_fns, repeats).items()}
  ms.update({f"{k} forward": v for k, v in timing.interleaved(fwd_fns, repeats).items()})
  frac = timing.recurrent_flops(cell, shape) / (ms["rnnlab train"] * 1e-3) / 1e9 / peak_gflops
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
      return peers.FlaxModel(cell, h, classes)
    if cell == "none":    # the floor: the same step without a recurrence
      return peers.ReadoutOnly(h, classes)
    return peers.rnnlab_model(cell, h, classes, None if method == "step" else method)

  steps = {v: peers.make_jax_step(model(*v), xs, ys) for v in variants}
  ms = timing.interleaved({v: step.train for v, step in steps.items()}, repeats, warmup=1)
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
  load_start, started = timing.load_average(), datetime.datetime.now().astimezone()
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
      f"at end {timing.load_average()}",
      "", format_parallel(results, shape), ""])


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
  ms = timing.interleaved({f"{k} seeds": v for k, v in steps.items()}, repeats)
  out.update(ms)
  return out


# ----------------------------------------------------------------------------- report

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
    cells = [r.cell, ",".join(map(str, r.shape)), f"{m['rnnlab train']:.1f}",
             f"{m['flax train']:.1f}"]
    if with_torch:
      cells += [f"{m['torch train']:.1f}"]
    cells += [f"{m['flax train'] / m['rnnlab train']:.2f}"]
    if with_torch:
      cells += [f"{m['torch train'] / m['rnnlab train']:.2f}"]
    cells += [f"{m['rnnlab forward']:.2f}", f"{m['flax forward']:.2f}"]
    if with_torch:
      cells += [f"{m['torch forward']:.2f}"]
    cells += [f"{m['flax forward'] / m['rnnlab forward']:.2f}"]
    if with_torch:
      cells += [f"{m['torch forward'] / m['rnnlab forward']:.2f}", str(r.torch_threads)]
    cells += [f"{r.compile_s['rnnlab']:.2f}", f"{r.compile_s['flax']:.2f}",
              f"{100 * r.peak_fraction:.1f}%"]
    lines.append("| " + " | ".join(cells) + " |")
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
  output = (_OUTPUT.value if _OUTPUT.value is not None
            else os.path.join(_RESULTS_DIR.value, REPORT_FILE))
  if output:  # before the timing
    run_files.check_writable_dir(os.path.dirname(os.path.abspath(output)),
                                 "--output" if _OUTPUT.value is not None else "--results_dir")
  parallel = run_parallel_suite(quick, repeats, _CLASSES.value) if "parallel" in suites else None
  if parallel is not None:
    print(parallel)
  if "classic" not in suites:
    if output:
      _replace_parallel_section(output, parallel)
    return
  shapes = QUICK_SHAPES if quick else SHAPES
  # --quick keeps the test under a minute on a loaded 2-core machine: one cell unless named.
  cell_names = (["lstm"] if quick and not flags.FLAGS["cells"].present else _CELLS.value)
  torch = peers.torch_module() if _TORCH.value else None
  torch_note = ("" if torch is not None else
                "PyTorch column skipped: " + ("--notorch" if not _TORCH.value
                                              else "torch is not installed") + ".")
  load_start = timing.load_average()
  started = datetime.datetime.now().astimezone()
  peak = timing.matmul_peak_gflops(3 if quick else 10, 512 if quick else 2048)
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
  load_end = timing.load_average()

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
  if output:
    _write_report(output, parts, torch, torch_note, peak, load_start, load_end, started)
    if parallel is not None:
      _replace_parallel_section(output, parallel)


def _replace_parallel_section(path: str, section: str) -> None:
  """Puts `section` at the end of the report at `path` in place of its previous version."""
  text = open(path).read() if os.path.exists(path) else "# rnnlab benchmark\n"
  text = text.split(PARALLEL_HEADING)[0].rstrip("\n") + "\n\n" + section
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  print(f"wrote {path}")


def _notes(path: str) -> str:
  """The notes section of the report at `path` (up to the parallel section), or a pointer to the
  committed report's where it has none: the notes are lab notes, not something a run measures."""
  text = open(path).read() if os.path.exists(path) else ""
  if NOTES_HEADING not in text:
    return NOTES_POINTER
  notes = text.split(NOTES_HEADING, 1)[1].split(PARALLEL_HEADING)[0]
  return NOTES_HEADING + notes.rstrip("\n") + "\n"


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
      f"- machine: {os.cpu_count()} cores (nproc), {timing.cpu_model()}, {platform.platform()}",
      f"- versions: {versions}; JAX backend {jax.default_backend()}",
      f"- load average (1, 5, 15 min) at start: {load_start}; at end: {load_end}",
      f"- float32 matmul peak (2048^3 jnp matmul): {peak:.1f} GFLOP/s",
      "- times: median wall ms over interleaved rounds (rnnlab, flax, torch called in turn);"
      " ratios are peer / rnnlab (> 1: rnnlab is faster).",
  ]
  if torch_note:
    header.append(f"- {torch_note}")
  body = "\n".join(header) + "\n\n## Results\n\n" + "\n\n".join(parts) + "\n"
  body += "\n" + _notes(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(body)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
