"""Figures from saved data (metrics.jsonl, CSV tables, diagnostics JSON); nothing is recomputed.

Every function takes paths or already-saved rows, draws with matplotlib's Agg backend (no
display needed) and writes one PNG. Functions return False (and write nothing) when there is no
data to draw yet.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rnnlab.analysis import figure_file
from rnnlab.studies import report
from rnnlab.training import metrics_log

_CELL_COLORS = {"vanilla": "tab:red", "lstm": "tab:blue", "gru": "tab:green", "irnn": "tab:orange",
                "lstm:chrono": "tab:cyan", "gru:chrono": "tab:olive", "mingru": "tab:purple",
                "minlstm": "tab:brown", "lru": "tab:pink"}
_DIRECTION_STYLE = {"uni": "-", "bi": "--"}


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _ticker():
  import matplotlib.ticker
  return matplotlib.ticker


def _seed_range(row: dict[str, str]) -> tuple[float, float]:
  """(min, max) over seeds of a CSV row's metric (metric_per_seed is ';'-joined)."""
  text = row.get("metric_per_seed") or row["metric_mean"]
  values = [float(v) for v in str(text).split(";") if v]
  return min(values), max(values)


def _color(cell: str) -> str:
  return _CELL_COLORS.get(cell, "tab:gray")


def _caption(fig: Any, data: dict[str, Any]) -> None:
  """The command that produced the data, under the figure (results name their command)."""
  if data.get("command"):
    fig.text(0.005, -0.01, f"made by: {data['command']}", fontsize=7, va="top", color="0.3")


def _save(fig: Any, out: str) -> None:
  figure_file.save(fig, out, dpi=110, bbox_inches="tight")


def read_curve(workdir: str, key: str) -> tuple[np.ndarray, ...]:
  """(steps, mean, min, max over seeds) of training-row `key` from a workdir's metrics.jsonl.

  Returns four arrays [rows]; empty when the key was never logged. Non-finite values are kept
  (as nan/inf) so a diverged run shows where it diverged.
  """
  steps, mean, lo, hi = [], [], [], []
  for row in metrics_log.read(workdir):
    if key not in row:
      continue
    per_seed = row.get("per_seed", {}).get(key)
    values = np.asarray(per_seed if per_seed is not None else [row[key]], float)
    steps.append(row["step"])
    mean.append(float(np.mean(values)))
    lo.append(float(np.min(values)))
    hi.append(float(np.max(values)))
  return tuple(np.asarray(a, float) for a in (steps, mean, lo, hi))


# ----------------------------------------------------------------------------- comparison

def compare_learning_curves(rows: Sequence[dict[str, Any]], out: str) -> bool:
  """Training curves of one task's grid points: one panel per length, one line per
  (cell, direction): the metric the chance baseline refers to (copy: loss, adding: MSE), mean
  over seeds with a min-max band, and the baseline as a dotted line.

  rows: compare rows (keys task, length, cell, direction, baseline_of, baseline, workdir).
  """
  rows = [r for r in rows if r.get("baseline_of")]
  if not rows:
    return False
  plt = _pyplot()
  lengths = sorted({r["length"] for r in rows})
  fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.4), squeeze=False)
  for ax, length in zip(axes[0], lengths):
    here = [r for r in rows if r["length"] == length]
    for r in here:
      steps, mean, lo, hi = read_curve(r["workdir"], r["baseline_of"])
      if not len(steps):
        continue
      label = f"{r['cell']} {r['direction']}"
      ax.plot(steps, mean, _DIRECTION_STYLE.get(r["direction"], "-"), color=_color(r["cell"]),
              label=label, lw=1.3)
      ax.fill_between(steps, lo, hi, color=_color(r["cell"]), alpha=0.12, lw=0)
    ax.axhline(here[0]["baseline"], color="k", ls=":", lw=1, label="chance baseline")
    ax.set_yscale("log")
    ax.set_title(f"{here[0]['task']}, T={length}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"train {here[0]['baseline_of']}")
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  _save(fig, out)
  return True


def memory_horizon(csv_path: str, out: str,
                   references: dict[str, Sequence[tuple[float, str]]] | None = None) -> bool:
  """Final metric against sequence length, per cell and direction, one panel per task.

  csv_path: compare.csv (columns task, length, cell, direction, metric, metric_mean,
    metric_per_seed, baseline, baseline_of). references: per task, extra horizontal lines
    (value, label); by default the chance accuracy 1/8 on copy and, for a task whose
    baseline is of its metric (adding), the baseline.
  """
  rows = [r for r in report.read_csv(csv_path) if r.get("metric_mean")]
  if not rows:
    return False
  references = dict(references or {})
  references.setdefault("copy", [(1.0 / 8.0, "chance accuracy 1/8")])
  plt = _pyplot()
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    here = [r for r in rows if r["task"] == task]
    metric = here[0]["metric"]
    for cell in dict.fromkeys(r["cell"] for r in here):
      for direction in ("uni", "bi"):
        line = sorted((int(r["length"]), float(r["metric_mean"]), *_seed_range(r))
                      for r in here if r["cell"] == cell and r["direction"] == direction)
        if not line:
          continue
        x, y, lo, hi = (np.asarray(v) for v in zip(*line))
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o" + _DIRECTION_STYLE[direction],
                    color=_color(cell), label=f"{cell} {direction}", capsize=3, ms=4, lw=1.3)
    refs = list(references.get(task, []))
    if here[0]["baseline_of"] == metric and here[0]["baseline"]:
      refs.append((float(here[0]["baseline"]), f"chance baseline {float(here[0]['baseline']):.3g}"))
    for value, label in refs:
      ax.axhline(value, color="k", ls=":", lw=1, label=label)
    if metric == "mse":
      ax.set_yscale("log")
      ax.axhline(0.01, color="gray", ls="-.", lw=1, label="solved (0.01)")
    ax.set_xscale("log")
    lengths = sorted({int(r["length"]) for r in here})
    ax.xaxis.set_minor_locator(_ticker().NullLocator())
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(v) for v in lengths])
    if metric == "accuracy":
      ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(f"final eval {metric}")
    ax.set_title(f"{task}: final {metric} vs T (mean; bars: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, out)
  return True


# ----------------------------------------------------------------------------- gradient flow

def gradient_flow(data: dict[str, Any], out: str) -> bool:
  """||dLoss/dh_t|| against t for each cell at initialisation and after training.

  data: the JSON written by rnnlab.studies.gradient_flow (`runs`: [{cell, stage, step,
    norms [time]}], `task`, `length`). Left: the norms; right: the same divided by the norm at the last real
    step, which shows how much of the signal reaches each step back through time.
  """
  runs = data.get("runs", [])
  if not runs:
    return False
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for run in runs:
    norms = np.asarray(run["norms"], float)
    t = np.arange(len(norms))
    style = "--" if run["stage"] == "init" else "-"
    label = f"{run['cell']}, {run['stage']}" + (f" (step {run['step']})" if run["step"] else "")
    axes[0].plot(t, norms, style, color=_color(run["cell"]), label=label, lw=1.3)
    last = norms[np.nonzero(norms)[0][-1]] if np.any(norms) else 1.0
    axes[1].plot(t, norms / last, style, color=_color(run["cell"]), label=label, lw=1.3)
  for ax, ylabel in zip(axes, ("||dLoss/dh_t||", "||dLoss/dh_t|| / ||dLoss/dh_last||")):
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].set_title(f"gradient reaching each step: {data.get('task')} T={data.get('length')}")
  axes[1].set_title("relative to the last step")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  _caption(fig, data)
  _save(fig, out)
  return True


def exploding(data: dict[str, Any], out: str) -> bool:
  """The exploding-gradient case: norms through time for recurrent scales, and training with
  and without global-norm clipping (grad norm and loss per step, read from metrics.jsonl).

  data: JSON written by rnnlab.studies.gradient_flow.exploding_study (`norms`: [{scale, norms}],
    `runs`: [{label, workdir, grad_clip}]).
  """
  if not data.get("norms"):
    return False
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, entry in enumerate(data["norms"]):
    norms = np.asarray(entry["norms"], float)
    axes[0].plot(np.arange(len(norms)), norms, color=colors[i % len(colors)],
                 label=f"recurrent scale {entry['scale']}")
  axes[0].set_yscale("log")
  axes[0].set_xlabel("time step t")
  axes[0].set_ylabel("||dLoss/dh_t||")
  axes[0].set_title(f"vanilla tanh RNN at init, {data.get('task')} T={data.get('length')}")
  for i, run in enumerate(data.get("runs", [])):
    for ax, key in ((axes[1], "grad_norm"), (axes[2], "loss")):
      steps, mean, _, _ = read_curve(run["workdir"], key)
      if not len(steps):
        continue
      finite = np.isfinite(mean)
      ax.plot(steps[finite], mean[finite], color=colors[(i + 3) % len(colors)],
              label=run["label"], lw=1.2)
      if np.any(~finite):
        ax.plot(steps[~finite], np.full(np.sum(~finite), np.nanmax(mean[finite], initial=1.0)),
                "x", color=colors[(i + 3) % len(colors)], label=f"{run['label']}: non-finite")
  axes[1].set_ylabel("gradient global norm (before clipping)")
  axes[2].set_ylabel("training loss")
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  for ax in axes[1:]:
    ax.set_yscale("log")
    ax.set_xlabel("step")
  axes[1].set_title(f"training, recurrent scale {data.get('train_scale')}")
  axes[2].set_title("loss (chance baseline dotted)")
  if data.get("baseline") is not None:
    axes[2].axhline(data["baseline"], color="k", ls=":", lw=1)
  fig.tight_layout()
  _caption(fig, data)
  _save(fig, out)
  return True


# ----------------------------------------------------------------------------- memory horizon

def horizon_bars(horizons: Sequence[dict[str, Any]], out: str) -> bool:
  """One panel per task: a bar per cell and direction at its memory horizon (the longest T
  solved, `rnnlab.studies.horizon`), labelled with the median steps to solve there; a cell that
  solved no T shows an empty slot marked "none"."""
  if not horizons:
    return False
  plt = _pyplot()
  tasks = list(dict.fromkeys(h["task"] for h in horizons))
  fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.6), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    here = [h for h in horizons if h["task"] == task]
    labels = [f"{h['cell']}\n{h['direction']}" for h in here]
    values = [h["horizon"] or 0 for h in here]
    bars = ax.bar(range(len(here)), values, color=[_color(h["cell"]) for h in here],
                  hatch=None, alpha=0.85)
    for bar, h in zip(bars, here):
      if h["direction"] == "bi":
        bar.set_hatch("//")
      text = "none" if h["horizon"] is None else f"{h['steps_median']:.0f} steps"
      ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                  ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(here)))
    ax.set_xticklabels(labels, fontsize=7)
    lengths = sorted({t for h in here
                      for t in h["lengths_run"] + h["unfinished"] + h.get("past_horizon", [])})
    if lengths:
      ax.set_yticks(lengths)
      ax.set_ylim(0, max(lengths) * 1.15)
    ax.set_ylabel("longest T solved (>= 2/3 of seeds)")
    ax.set_title(f"{task}: memory horizon")
    ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  _save(fig, out)
  return True
