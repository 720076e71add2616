"""`make bench` writes README's table from what the benchmarks printed, never from typed figures."""

import json

import pytest

from bench import run_all


@pytest.fixture
def readme(tmp_path, monkeypatch):
    path = tmp_path / "README.md"
    path.write_text(f"# Figures\n\nbefore\n{run_all.START}\nold table\n{run_all.END}\nafter\n")
    monkeypatch.setattr(run_all, "README", path)
    return path


def test_the_table_is_written_from_the_kept_json_lines(readme):
    line = {"bench": "pages", "dashboard_p95_ms": 97.1, "load": 0.4}
    results = {"pages": {"lines": [line], "ran_at": "2026-11-30 04:00 UTC", "machine": "2 cores, load 0.4"}}
    run_all.write_readme(results)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Figures\n\nbefore\n") and text.endswith("after\n")
    row = next(r for r in text.splitlines() if r.startswith("| `python -m bench.pages`"))
    assert f"`{json.dumps(line)}`" in row and "2026-11-30 04:00 UTC" in row and "≤ 150 ms" in row
    assert "| `python -m bench.load` | " in text and "not run yet" in text  # every benchmark has its row


def test_a_readme_without_the_markers_is_refused(readme):
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="bench-table"):
        run_all.write_readme({})


def test_a_benchmark_that_prints_no_figure_fails_the_run(monkeypatch):
    bench = run_all.Bench("x", ["-c", "print('no json here')"], "nothing", "none")
    with pytest.raises(RuntimeError, match="0 JSON lines"):
        run_all.run(bench)
    ok = run_all.Bench("y", ["-c", "import json; print(json.dumps({'bench': 'y', 'n': 1}))"], "one", "none")
    assert run_all.run(ok) == [{"bench": "y", "n": 1}]
