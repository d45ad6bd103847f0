"""`adapterbot` starts fast where it needs no model: help, argument errors and `skill list` import no heavy library.

Each case runs in a fresh interpreter, so what it imports is what a user's command imports.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "gradio", "bm25s", "accelerate", "safetensors")

PROBE = """
import json, sys
from bot.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def run_cli(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["skill", "add", "--help"],
    ["skill", "import", "--help"],
    ["skill", "export", "--help"],
    ["bogus"],
    ["skill", "add", "gamma"],  # --data missing
    ["manager", "train", "--threshold", "1.5"],
    ["eval"],  # --out missing
])
def test_help_and_argument_errors_import_no_heavy_library(argv):
    result = run_cli(*argv)
    assert result["code"] in (0, 2)
    assert result["heavy"] == [], f"`adapterbot {' '.join(argv)}` imported {result['heavy']}"


def test_skill_list_imports_no_heavy_library():
    result = run_cli("skill", "list", "--skills-dir", str(ROOT / "skills" / "bundled"))
    assert result == {"code": 0, "heavy": []}
