"""experiments.benchmark --quick: runs end to end and reports ratios against the peers."""

from tests.conftest import run_entry


def test_quick_benchmark_writes_ratio_table(tmp_path):
  out = tmp_path / "benchmark.md"
  result = run_entry("experiments.benchmark", "--quick", f"--output={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  report = out.read_text()
  for column in ("flax/rnnlab train", "flax/rnnlab fwd", "compile s rnnlab", "peak frac"):
    assert column in report and column in result.stdout
  assert "torch/rnnlab train" in report or "PyTorch column skipped" in report
  assert "load average" in report and "python -m experiments.benchmark --quick" in report
  header, row = _row(report, "| cell |"), _row(report, "| lstm |")
  for column in ("flax/rnnlab train", "flax/rnnlab fwd"):
    assert float(row[header.index(column)]) > 0


def _row(report: str, prefix: str) -> list[str]:
  line = next(l for l in report.splitlines() if l.startswith(prefix))
  return [c.strip() for c in line.strip("|").split("|")]


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
