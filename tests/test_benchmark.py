"""experiments.benchmark --quick: runs end to end and reports ratios against the peers."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, committed_results_status, entry_env, run_entry


@pytest.mark.slow
def test_quick_benchmark_writes_ratio_table_outside_the_committed_results(tmp_path):
  """The README's `--quick` (no --output) reports under the temporary directory, with every
  column of every peer (torch is a test dependency), and leaves experiments/results alone."""
  before = committed_results_status()
  result = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--quick"], cwd=ROOT,
                          env=dict(entry_env(), TMPDIR=str(tmp_path)), capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert committed_results_status() == before
  report = (tmp_path / "rnnlab_benchmark" / "benchmark.md").read_text()
  assert "- command: `python -m experiments.benchmark --quick`" in report
  load = next(l for l in report.splitlines() if l.startswith("- load average"))
  assert len(load.split(": ")[1].split(";")[0].split()) == 3  # 1, 5 and 15 min, as numbers
  header, row = _row(report, "| cell |"), _row(report, "| lstm |")
  for column in ("rnnlab train ms", "flax train ms", "torch train ms", "flax/rnnlab train",
                 "torch/rnnlab train", "rnnlab fwd ms", "flax fwd ms", "torch fwd ms",
                 "flax/rnnlab fwd", "torch/rnnlab fwd", "compile s rnnlab", "compile s flax"):
    assert float(row[header.index(column)]) > 0, column
    assert column in result.stdout
  assert int(row[header.index("torch threads")]) >= 1
  assert 0 < float(row[header.index("peak frac")].rstrip("%"))
  # The notes are lab notes of the committed report: a fresh report points to them.
  assert "See the notes section of experiments/results/benchmark.md." in report


def _row(report: str, prefix: str) -> list[str]:
  line = next(l for l in report.splitlines() if l.startswith(prefix))
  return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.slow
def test_quick_parallel_suite_replaces_only_its_section(tmp_path):
  out = tmp_path / "benchmark.md"
  out.write_text("# earlier report\n\nclassic table\n")
  for _ in range(2):  # the second run replaces the first run's section
    result = run_entry("experiments.benchmark", "--quick", "--suites=parallel",
                       f"--output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
  report = out.read_text()
  assert report.startswith("# earlier report\n\nclassic table\n")
  assert report.count("## Parallel-in-time cells") == 1
  assert "--suites=parallel" in report and "`auto` never more than 10% slower" in report
  header = _row(report, "| T | cell |")
  rows = [l for l in report.splitlines() if l.startswith("| 20 |") or l.startswith("| 64 |")]
  assert len(rows) == 2 * (4 + 3 * 3)  # per T: lstm, flax lstm, gru, floor, 3 cells x 3 methods
  lstm = _row(report, "| 20 | lstm |")
  assert float(lstm[header.index("x LSTM")]) == 1.0
  for line in rows:
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[header.index("train ms")]) > 0


def test_unknown_suite_is_a_usage_error(tmp_path):
  result = run_entry("experiments.benchmark", "--quick", "--suites=gpu", f"--output={tmp_path}/b.md")
  assert result.returncode != 0 and "'gpu' is not one of: classic, parallel" in result.stderr
