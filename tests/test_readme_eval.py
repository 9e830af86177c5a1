"""The README's evaluation tables are generated from docs/eval_results/eval.json (scripts/readme_eval.py): CI fails
when they differ, and the check catches an edited number."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_eval.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_readme_eval_tables_in_sync():
    r = run("--check")
    assert r.returncode == 0, r.stderr


def test_check_catches_an_edited_number(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    text = readme.read_text()
    begin = text.index("<!-- eval:tables:begin -->")
    i = next(k for k in range(begin, len(text)) if text[k].isdigit())
    readme.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
    r = run("--check", "--readme", str(readme))
    assert r.returncode == 1 and "differ" in r.stderr
