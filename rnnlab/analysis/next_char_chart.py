"""Figures for the text tasks, drawn from numbers already computed (never recomputing them).

  next_char_bar      the notes' "next character probability" bar chart: top-k characters after a
                     prompt, the argmax highlighted, value labels on the bars
  bottleneck_plot    exact match vs source length, one line per model (with / without attention)
  attention_heatmap  attention weights a_tj of one example: output words (rows) x source tokens
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rnnlab.analysis import figure_file  # noqa: E402

_SHOW = {" ": "␣", "\n": "\\n", "\t": "\\t"}


def show_char(c: str) -> str:
  """A printable label for a character (space, newline and tab made visible)."""
  return _SHOW.get(c, c)


def _save(fig: plt.Figure, path: str) -> None:
  fig.tight_layout()
  figure_file.save(fig, path, dpi=120)


def next_char_bar(probs: np.ndarray, vocab: Sequence[str], prompt: str, path: str,
                  top_k: int = 10) -> None:
  """Bar chart of the `top_k` most probable next characters.

  probs: [vocab] softmax after reading `prompt`; vocab: the character of each id.
  """
  if top_k < 1:
    raise ValueError(f"top_k must be >= 1 (the number of characters shown), got {top_k}")
  probs = np.asarray(probs, np.float64)
  order = np.argsort(-probs, kind="stable")[:top_k]
  labels = [show_char(vocab[i]) for i in order]
  values = probs[order]
  fig, ax = plt.subplots(figsize=(8, 5))
  bars = ax.bar(range(len(order)), values, color="skyblue", edgecolor="black")
  bars[0].set_color("green")
  bars[0].set_edgecolor("black")
  for bar, p in zip(bars, values):
    ax.text(bar.get_x() + bar.get_width() / 2, p + 0.02, f"{p:.2f}", ha="center", fontsize=10)
  ax.set_xticks(range(len(order)), labels, fontsize=12)
  shown = prompt if len(prompt) <= 40 else "..." + prompt[-37:]
  ax.set_title("Next Character Probability Distribution\n"
               f"Input: {shown!r} -> argmax: {show_char(vocab[order[0]])!r}")
  ax.set_xlabel(f"Vocabulary (top {len(order)} of {len(vocab)} characters)")
  ax.set_ylabel("Probability (softmax)")
  ax.set_ylim(0, 1)
  _save(fig, path)


def bottleneck_plot(lengths: Sequence[int], curves: Mapping[str, Sequence[float]], path: str,
                    title: str = "The seq2seq bottleneck", ylabel: str = "exact match (greedy)"
                    ) -> None:
  """One line per model: curves[name][i] is the metric at source length lengths[i]."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, values in curves.items():
    ax.plot(lengths, values, marker="o", label=name)
  ax.set_xlabel("source length (digits)")
  ax.set_ylabel(ylabel)
  ax.set_xticks(list(lengths))
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title)
  _save(fig, path)


def attention_heatmap(weights: np.ndarray, source: Sequence[str], output: Sequence[str],
                      path: str, title: str = "Attention weights") -> None:
  """weights: [len(output), len(source)] attention of each output token over the source."""
  weights = np.asarray(weights)
  size = (max(4.0, 0.5 * len(source) + 2), max(3.0, 0.35 * len(output) + 1.5))
  fig, ax = plt.subplots(figsize=size)
  im = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
  ax.set_xticks(range(len(source)), list(source))
  ax.set_yticks(range(len(output)), list(output))
  ax.set_xlabel("source")
  ax.set_ylabel("output")
  ax.set_title(title)
  fig.colorbar(im, ax=ax, label="attention weight")
  _save(fig, path)
