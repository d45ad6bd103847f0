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
