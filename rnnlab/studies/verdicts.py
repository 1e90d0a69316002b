"""The memory study read against the literature: published numbers for the same tasks and one
sentence per expectation, measured vs expected."""

from __future__ import annotations

from typing import Any, Sequence

from rnnlab.studies import sweep_table

# problem as here), shown beside the measured rows. Bai, Kolter & Koltun 2018, Table 1.
LITERATURE = {
    ("copy", 1000, "lstm"): "loss 0.0204 (Bai et al. 2018; = baseline)",
    ("copy", 1000, "gru"): "loss 0.0197 (Bai et al. 2018)",
    ("copy", 1000, "vanilla"): "loss 0.0202 (Bai et al. 2018)",
    ("copy", 200, "lstm"): "at the baseline from T=200 (Arjovsky et al. 2016)",
    ("copy", 500, "lstm"): "at the baseline from T=200 (Arjovsky et al. 2016)",
    ("adding", 600, "lstm"): "MSE 0.164 (Bai et al. 2018)",
    ("adding", 600, "gru"): "MSE 5.3e-5 (Bai et al. 2018)",
    ("adding", 600, "vanilla"): "MSE 0.177 (Bai et al. 2018)",
}


def literature_text(row: dict[str, Any]) -> str:
  return LITERATURE.get((row["task"], row["length"], row["cell"]), "")


def _find(rows: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
  return [r for r in rows if all(r.get(k) == v for k, v in match.items())
          and r.get("metric_mean") is not None]


def _trend(row: dict[str, Any]) -> str:
  """" (0.21 at half the budget)" for an unsolved run, to show if it was still improving."""
  half = row.get("metric_at_half")
  if half is None or row.get("solved_seeds") == row.get("num_seeds"):
    return ""
  return f" ({half:.3g} at step ~{row['steps'] // 2})"


def literature_verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
  """What was measured against what the literature leads one to expect, one sentence each."""
  out = []
  copy_rows = _find(rows, task="copy")
  # 1. A tanh RNN stalls at the copy baseline for long delays (Arjovsky et al. 2016, fig. 1).
  long_vanilla = [r for r in copy_rows if r["cell"] == "vanilla" and r["length"] >= 100]
  if long_vanilla:
    stalled = [r for r in long_vanilla if r["metric_mean"] < 0.25
               and r["loss_mean"] is not None and r["loss_mean"] > 0.9 * r["baseline"]]
    desc = "; ".join(f"{r['direction']} T={r['length']}: accuracy {r['metric_mean']:.3f}, loss "
                     f"{r['loss_mean']:.4f} vs baseline {r['baseline']:.4f}" for r in long_vanilla)
    verdict = ("**agrees**" if len(stalled) == len(long_vanilla) else
               "**partly agrees**" if stalled else "**disagrees**")
    out.append(f"Expected: the vanilla tanh RNN stalls at the copy baseline for long delays. "
               f"Measured ({desc}): {verdict}.")
  # 2. LSTM/GRU solve short and medium delays.
  gated = [r for r in copy_rows if r["cell"] in ("lstm", "gru")]
  if gated:
    lengths = sorted({r["length"] for r in gated})
    short = [r for r in gated if r["length"] in lengths[:2]]
    solved = [r for r in short if r["solved_seeds"] == r["num_seeds"]]
    desc = "; ".join(f"{r['cell']} {r['direction']} T={r['length']}: "
                     f"{sweep_table.steps_to_solve_text(r)}, accuracy {r['metric_mean']:.3f}"
                     + _trend(r) for r in short)
    verdict = ("**agrees**" if len(solved) == len(short) else
               "**partly agrees**" if solved else "**disagrees** within this budget")
    longer = [r for r in gated if r["length"] not in lengths[:2]]
    tail = ""
    if longer:
      best = max(longer, key=lambda r: r["metric_mean"])
      tail = (f" At longer delays the best gated run reaches recall accuracy "
              f"{best['metric_mean']:.3f} ({best['cell']} {best['direction']} T={best['length']}).")
    out.append(f"Expected: LSTM and GRU solve short/medium copy delays "
               f"(T in {{{', '.join(map(str, lengths[:2]))}}} here). Measured ({desc}): "
               f"{verdict}.{tail}")
  add_rows = _find(rows, task="adding")
  gated = [r for r in add_rows if r["cell"] in ("lstm", "gru")]
  if gated:
    moderate = [r for r in gated if r["length"] <= 200]
    good = [r for r in moderate if r["metric_mean"] < 0.01]
    desc = "; ".join(f"{r['cell']} {r['direction']} T={r['length']}: MSE {r['metric_mean']:.4f}"
                     + ("" if r["metric_mean"] < 0.01 else _trend(r)) for r in moderate)
    verdict = ("**agrees**" if moderate and len(good) == len(moderate) else
               "**partly agrees**" if good else "**disagrees** within this budget")
    out.append(f"Expected: on the adding problem LSTM and GRU reach MSE < 0.01 for moderate T "
               f"(<= 200 here). Measured ({desc}): {verdict}.")
  vanilla_add = [r for r in add_rows if r["cell"] == "vanilla"]
  if vanilla_add:
    longest = max(r["length"] for r in vanilla_add)
    at = [r for r in vanilla_add if r["length"] == longest]
    near = [r for r in at if r["metric_mean"] > 0.5 * r["baseline"]]
    desc = "; ".join(f"{r['direction']}: MSE {r['metric_mean']:.4f}" for r in at)
    out.append(f"Expected: the vanilla RNN stays near the adding baseline (0.167) at long T. "
               f"Measured at T={longest} ({desc}): "
               f"{'**agrees**' if len(near) == len(at) else '**disagrees**'}.")
  pairs = []
  for r in rows:
    if r.get("direction") == "bi" and r.get("metric_mean") is not None:
      uni = _find(rows, task=r["task"], length=r["length"], cell=r["cell"], direction="uni")
      if uni:
        pairs.append((r, uni[0]))
  if pairs:
    better = sum((b["metric_mean"] > u["metric_mean"]) == (b["metric"] == "accuracy")
                 and abs(b["metric_mean"] - u["metric_mean"]) > 1e-3 for b, u in pairs)
    desc = "; ".join(f"{b['task']} {b['cell']} T={b['length']}: {u['metric_mean']:.3g} -> "
                     f"{b['metric_mean']:.3g}" for b, u in pairs)
    out.append(f"Bidirectional vs unidirectional (same cell, task and T; {desc}): the "
               f"bidirectional run is better in {better} of {len(pairs)} pairs. Neither task "
               "can be answered by reading backwards (on copy the backward direction has seen "
               "only blanks at a recall step), so a gain has to come from side cues: the backward "
               "direction knows how far each step is from the end (which recall slot it is), "
               "the readout sees twice the features, and on adding the backward state read at "
               "step 0 has a shorter path to the first marker.")
  if not out:
    out.append("No finished points yet: nothing to compare.")
  return out


def _beats_baseline(row: dict[str, Any]) -> bool:
  """Clearly below the chance baseline: loss under 90% of it (copy) / MSE under half (adding)."""
  if row.get("loss_mean") is None or not row.get("baseline"):
    return False
  return row["loss_mean"] < (0.9 if row["task"] == "copy" else 0.5) * row["baseline"]


def _solved(row: dict[str, Any]) -> bool:
  return bool(row.get("num_seeds")) and row.get("solved_seeds") == row.get("num_seeds")


def _value_text(row: dict[str, Any]) -> str:
  name = "accuracy" if row["task"] == "copy" else "MSE"
  return (f"{row['cell']} T={row['length']}: {name} {row['metric_mean']:.3g}, loss "
          f"{row['loss_mean']:.3g} vs baseline {row['baseline']:.3g}"
          + (f", {sweep_table.steps_to_solve_text(row)}" if _solved(row) else ""))


def horizon_verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
  """The long-delay study read against the literature, one sentence each."""
  out = []
  done = [r for r in rows if r.get("metric_mean") is not None and r.get("loss_mean") is not None]
  for task in dict.fromkeys(r["task"] for r in done):
    here = [r for r in done if r["task"] == task]
    for length in sorted({r["length"] for r in here}):
      at = [r for r in here if r["length"] == length]
      solved = [r["cell"] for r in at if _solved(r)]
      below = [r["cell"] for r in at if _beats_baseline(r) and not _solved(r)]
      at_base = [r["cell"] for r in at if not _beats_baseline(r) and not _solved(r)]
      out.append(f"{task} T={length}: solved by {', '.join(solved) or 'none'}; clearly below "
                 f"the chance baseline but not solved: {', '.join(below) or 'none'}; at the "
                 f"baseline: {', '.join(at_base) or 'none'}.")
  diverged = [r for r in rows if r.get("status") == "diverged"]
  if diverged:
    out.append("Diverged (loss became NaN/inf, training stopped; recorded, not retried): "
               + "; ".join(f"{r['cell']} {r['task']} T={r['length']} at step {r['diverged_at']}"
                           for r in diverged) + ".")
  for (task, length, cell), text in LITERATURE.items():
    mine = [r for r in done if (r["task"], r["length"], r["cell"]) == (task, length, cell)]
    if mine:
      r = mine[0]
      beat = _solved(r) or _beats_baseline(r)
      out.append(f"Literature {cell} on {task} T={length}: {text}. Measured: {_value_text(r)}: "
                 + ("**beats the chance baseline**" if beat else "**at the chance baseline**")
                 + ".")
  pairs = []
  for r in done:
    if r["cell"].endswith(":chrono"):
      std = _find(done, task=r["task"], length=r["length"], direction=r["direction"],
                  cell=r["cell"].split(":")[0])
      if std:
        pairs.append((std[0], r))
  if pairs:
    better = sum(c["loss_mean"] < s["loss_mean"] for s, c in pairs)
    desc = "; ".join(f"{s['cell']} {s['task']} T={s['length']}: loss {s['loss_mean']:.3g} -> "
                     f"{c['loss_mean']:.3g}" for s, c in pairs)
    moved = [(s, c) for s, c in pairs if _beats_baseline(s) or _beats_baseline(c)
             or _solved(s) or _solved(c)]
    moved_better = sum(c["loss_mean"] < s["loss_mean"] for s, c in moved)
    out.append(f"Chrono vs standard initialisation (same cell, task and T; {desc}): chrono has "
               f"the lower final loss in {better} of {len(pairs)} pairs; in the {len(moved)} "
               f"pairs where either run left the chance baseline, in {moved_better}.")
  cells = list(dict.fromkeys(r["cell"] for r in done))
  if cells:
    parts = []
    for cell in cells:
      mine = [r for r in done if r["cell"] == cell]
      longest = {t: max((r["length"] for r in mine if r["task"] == t and _solved(r)), default=None)
                 for t in dict.fromkeys(r["task"] for r in mine)}
      wall = sum(r.get("wall_time_sec") or 0.0 for r in mine)
      ms_per_step = [1000 * r["wall_time_sec"] / (r["steps"] * r["length"])
                     for r in mine if r.get("wall_time_sec") and r.get("steps")]
      solved_text = ", ".join(f"{t} T={v}" if v else f"{t} none" for t, v in longest.items())
      best = {t: min((r["loss_mean"] / r["baseline"] for r in mine if r["task"] == t
                      and r.get("baseline")), default=None)
              for t in dict.fromkeys(r["task"] for r in mine)}
      best_text = ", ".join(f"{t} {v:.2f}" for t, v in best.items() if v is not None)
      parts.append(f"{cell}: longest solved {solved_text}; lowest loss/baseline {best_text}; "
                   f"{wall:.0f} s in all"
                   + (f", {min(ms_per_step):.2f} ms per step per time step" if ms_per_step else ""))
    out.append("Memory per unit of wall time, per cell (longest T solved; the lowest final loss "
               "as a fraction of the chance baseline, per task; wall time summed over its "
               "points, and wall ms per training step per time step, compilation and "
               "evaluation included): " + "; ".join(parts) + ".")
  if not out:
    out.append("No finished points yet: nothing to compare.")
  return out


VERDICTS = {"compare": literature_verdicts, "horizon": horizon_verdicts}
