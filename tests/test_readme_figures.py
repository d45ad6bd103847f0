"""The README's figure tables are what the committed reports say (``python -m bot.evaluation.readme``)."""
from __future__ import annotations

from bot.evaluation.readme import REPORTS, ROOT, render, update


def test_the_readme_figures_match_the_committed_reports():
    _, changed = update(ROOT / "README.md", render(REPORTS))
    assert changed == [], f"README blocks {changed} differ from docs/reports/: run `python -m bot.evaluation.readme`"


def test_a_changed_figure_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    blocks = render(REPORTS)
    blocks["skills"] = blocks["skills"].replace("|", "¦", 1)
    assert update(readme, blocks)[1] == ["skills"]


def test_the_comparison_table_is_in_the_readme_from_its_report():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- figures:compare -->" in text and "<!-- /figures:compare -->" in text
    blocks = render(REPORTS)
    assert "compare" in blocks, "docs/reports/compare/compare.json is missing: run `adapterbot compare --out docs/reports/compare`"
    assert "| full fine-tuning |" in blocks["compare"] and "Reduced-budget comparison" in blocks["compare"]


def test_a_changed_comparison_figure_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    blocks = render(REPORTS)
    blocks["compare"] = blocks["compare"].replace("| bare backbone |", "| bare |", 1)
    assert update(readme, blocks)[1] == ["compare"]
