"""The seq2seq bottleneck, measured: exact match vs source length with and without attention.

Trains one model per attention variant (`model.attention` set per variant on one base config),
each a point of `rnnlab.studies.sweep` in <workdir_root>/<variant> (an interrupted one resumes, a
finished one is only re-evaluated; `launch.train_points` trains them, in worker processes or as
submitit jobs), evaluates each with greedy decoding on fresh held-out batches, and writes to
results_dir (by default workdir_root itself):
  seq2seq_bottleneck.csv   exact match and token accuracy per source length, per variant (data)
  seq2seq_bottleneck.png   exact match vs source length, one line per variant
  seq2seq_attention.png    attention weights of the first attention variant on one long example
  seq2seq.md               the table, example translations, the command, date and machine
`experiments/seq2seq_study.py` is its entry point; results_dir=experiments/results regenerates the
committed report.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
from typing import Any

import jax
import ml_collections
import numpy as np

from rnnlab.analysis import next_char_chart
from rnnlab.errors import ConfigError
from rnnlab.models import seq2seq
from rnnlab.studies import launch, sweep, sweep_table
from rnnlab.tasks import translation
from rnnlab.training import evaluation, run_files

REPORT_FILE = "seq2seq.md"


def _decode_examples(workdir: str, key: jax.Array, count: int) -> dict[str, Any]:
  """Greedy translations and attention weights of `count` held-out examples."""
  trainer, state = evaluation.restore_run(workdir)
  params = jax.tree.map(lambda x: x[0], state.params)
  batch = trainer.task.sample(key, count)
  tokens, weights = trainer.model.apply({"params": params}, batch["inputs"], batch["lengths"],
                                        method="decode")
  return jax.tree.map(np.asarray, {"batch": batch, "tokens": tokens, "weights": weights})


def run_study(config: ml_collections.ConfigDict, workdir_root: str, variants: list[str],
              results_dir: str | None, eval_batches: int, machine: str, command: str,
              training: launch.Training = launch.Training()) -> dict[str, Any] | None:
  """Trains, evaluates and reports every variant; returns {variant: final metrics}, or None
  while some variants are not finished (other shards, Slurm jobs: run it again when they are).

  results_dir: where the table and plots go; None: workdir_root.
  training: how the variants are trained (`launch.train_points`).
  """
  unknown = [v for v in variants if v not in seq2seq.ATTENTION_KINDS]
  if unknown or not variants:
    raise ConfigError(f"variants={','.join(variants)}: each must be one of "
                      f"{', '.join(seq2seq.ATTENTION_KINDS)}")
  if config.task.name != "translation":
    raise ConfigError(f"config.task.name={config.task.name!r}: the study needs 'translation'")
  if results_dir is not None:
    run_files.check_writable_dir(results_dir, "--results_dir")  # before hours of training
  # One sweep point per variant, in workdir_root/<variant>: resumable, in parallel workers.
  points = sweep.make_points(config, [(("model.attention", v),) for v in variants],
                             workdir_root, names=variants)
  if not launch.train_points(points, workdir_root, training).done:
    return None
  results: dict[str, dict[str, Any]] = {}
  for variant, point in zip(variants, points):
    summary = sweep_table.read_summary(point.workdir) or {}
    metrics = evaluation.evaluate_workdir(point.workdir, eval_batches=eval_batches)
    results[variant] = {**metrics, "wall_time_sec": summary.get("wall_time_sec", 0.0),
                        "steps": summary.get("steps"), "workdir": point.workdir}

  results_dir = workdir_root if results_dir is None else results_dir
  task = translation.TranslationTask.from_config(config.task)
  lengths = list(task.source_lengths)
  os.makedirs(results_dir, exist_ok=True)
  _write_csv(os.path.join(results_dir, "seq2seq_bottleneck.csv"), results, lengths)
  next_char_chart.bottleneck_plot(
      lengths, {_label(v): [results[v][f"exact_match_len{d:02d}"] for d in lengths]
                for v in variants},
      os.path.join(results_dir, "seq2seq_bottleneck.png"),
      title=f"Digits -> English words: exact match by source length\n"
            f"({config.model.cell}, H={config.model.hidden_size}, "
            f"{'bi' if config.model.bidirectional else 'uni'}directional encoder, "
            f"{config.train.num_steps} steps)")

  # One long example from a fixed key of its own, translated by every variant.
  key = jax.random.PRNGKey(2024)
  count = 4 * len(lengths)
  decoded = {v: _decode_examples(results[v]["workdir"], key, count) for v in variants}
  first = decoded[variants[0]]["batch"]
  index = int(np.argmax(first["lengths"]))
  source = translation.decode_source(first["inputs"][index], int(first["lengths"][index]))
  reference = translation.decode_target(first["targets"][index])
  examples = {v: translation.decode_target(d["tokens"][index]) for v, d in decoded.items()}
  errors = _errors(decoded["none"]) if "none" in decoded else []
  attended = [v for v in variants if v != "none"]
  heatmap = None
  if attended:
    v = attended[0]
    tokens = decoded[v]["tokens"][index]
    n_out = int(np.argmax(tokens == translation.EOS)) + 1 if np.any(
        tokens == translation.EOS) else len(tokens)
    words = [translation.TARGET_VOCAB[int(t)] for t in tokens[:n_out]]
    heatmap = os.path.join(results_dir, "seq2seq_attention.png")
    next_char_chart.attention_heatmap(
        decoded[v]["weights"][index, :n_out, :len(source)], list(source), words, heatmap,
        title=f"{_label(v)}: attention while translating {source}")
  _write_markdown(os.path.join(results_dir, REPORT_FILE), config, results, variants, lengths,
                  source, reference, examples, errors, heatmap is not None, eval_batches, machine,
                  command)
  return results


def _errors(decoded: dict[str, Any], most: int = 5) -> list[tuple[str, str, str]]:
  """Up to `most` wrong translations (source, reference, output), one per source length."""
  batch, found = decoded["batch"], {}
  for i in range(len(batch["lengths"])):
    source = translation.decode_source(batch["inputs"][i], int(batch["lengths"][i]))
    reference = translation.decode_target(batch["targets"][i])
    output = translation.decode_target(decoded["tokens"][i])
    if output != reference and len(source) not in found:
      found[len(source)] = (source, reference, output)
  return [found[n] for n in sorted(found)][-most:]


def _label(variant: str) -> str:
  return {"none": "no attention", "additive": "additive attention (Bahdanau)",
          "dot": "dot attention (Luong)"}[variant]


def _write_csv(path: str, results: dict[str, Any], lengths: list[int]) -> None:
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["attention", "source_length", "exact_match"])
    for v, m in results.items():
      for d in lengths:
        w.writerow([v, d, f"{m[f'exact_match_len{d:02d}']:.4f}"])
      w.writerow([v, "all", f"{m['exact_match']:.4f}"])


def _write_markdown(path: str, config: ml_collections.ConfigDict, results: dict[str, Any],
                    variants: list[str], lengths: list[int], source: str, reference: str,
                    examples: dict[str, str], errors: list[tuple[str, str, str]],
                    has_heatmap: bool, eval_batches: int, machine: str, command: str) -> None:
  m, t = config.model, config.train
  n_eval = eval_batches * t.eval_batch_size
  lines = [
      "# Seq2seq bottleneck: digits -> English words, with and without attention",
      "",
      f"Task `translation` (rnnlab/tasks/translation.py): a number of 1..{config.task.length} "
      "digits in, its English words out (`3004` -> `three thousand four`). Model "
      f"(rnnlab/seq2seq.py): {m.cell.upper()} encoder ({'bi' if m.bidirectional else 'uni'}"
      f"directional, H={m.hidden_size} per direction, {m.num_layers} layer) -> {m.cell.upper()} "
      "decoder started from the encoder's final state; teacher forcing in training, greedy "
      f"decoding in evaluation. Same config and steps ({t.num_steps}, batch {t.batch_size}, "
      f"lr {t.learning_rate} {t.schedule}) for every variant; only `model.attention` differs.",
      "",
      f"Greedy exact match (whole output sequence right) on {n_eval} held-out numbers "
      f"({n_eval // len(lengths)} per source length), by source length:",
      "",
      "| source digits | " + " | ".join(_label(v) for v in variants) + " |",
      "|---:|" + "---:|" * len(variants),
  ]
  for d in lengths:
    lines.append(f"| {d} | " + " | ".join(f"{results[v][f'exact_match_len{d:02d}']:.3f}"
                                          for v in variants) + " |")
  lines += [
      "| **all** | " + " | ".join(f"**{results[v]['exact_match']:.3f}**" for v in variants) + " |",
      "| token accuracy | " + " | ".join(f"{results[v]['token_accuracy']:.3f}"
                                        for v in variants) + " |",
      "| training time (s) | " + " | ".join(f"{results[v]['wall_time_sec']:.0f}"
                                           for v in variants) + " |",
      "",
      "![exact match by source length](seq2seq_bottleneck.png)",
      "",
      f"One held-out example, `{source}` ({len(source)} digits):",
      "",
      f"- reference: {reference}",
  ]
  lines += [f"- {_label(v)}: {examples[v]}" + ("" if examples[v] == reference else "  (wrong)")
            for v in variants]
  if errors:
    lines += ["", "Wrong translations without attention (held-out, one per source length):", "",
              "| source | reference | no attention |", "|---|---|---|"]
    lines += [f"| `{s}` | {r} | {o} |" for s, r, o in errors]
  lines += [
      "",
      "Without attention the decoder knows the source only through the encoder's final state, a "
      "fixed vector that must hold every digit and its position; its errors are digits dropped, "
      "swapped or shifted into the wrong group, and they grow with the source length. With "
      "attention each output step reads the source position it needs.",
  ]
  if has_heatmap:
    lines += ["", "![attention weights](seq2seq_attention.png)", "",
              "In the heat-map each digit word attends to its own digit, in order (the diagonal); "
              "\"hundred\" and the scale words (thousand, million, ...) spread their attention "
              "over the neighbouring digits and the end of the source, where the number of digits "
              "still to come, and hence the scale, can be read."]
  lines += [
      "",
      f"Produced by `{command}` on {datetime.date.today().isoformat()}, machine: {machine} "
      f"(JAX {jax.__version__}, {jax.devices()[0].platform}, Python {platform.python_version()}). "
      "Per-length numbers are also in seq2seq_bottleneck.csv.",
      "",
  ]
  with open(path, "w") as f:
    f.write("\n".join(lines))
