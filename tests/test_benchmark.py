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
