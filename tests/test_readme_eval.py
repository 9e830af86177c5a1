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


def _probe_doc(task, values):
    """A hand-made probe.json: ``values`` = {method: main metric}."""
    main = {"action": "acc1", "gait": "rank1_cl"}[task]
    methods = {n: {main: v, "spread": 1.0, "spreads": {main: 1.0}, "per_seed": {main: [v - 1, v + 1]}}
               for n, v in values.items()}
    clips = {"train": 10, "test": 4}
    if task == "gait":
        clips.update(test_subjects=2, test_gallery_nm=2, test_probes_cl=4, test_probes_bg=2)
    return {"task": task, "size": "full", "methods": methods, "main_metric": main,
            "classes": ["a", "b", "c", "d"] if task == "action" else 8, "clips": clips,
            "settings": {"seeds": [0, 1], "frames": 16, "width": 128, "height": 128, "input_size": 48, "epochs": 30},
            "weights_sha256": "ab" * 32, "commit": "0123456789ab",
            "compute": {"machine": "AMD EPYC (2 cores)", "torch_threads": 1, "seconds_total": 3600.0}}


def _write_probe(folder, **docs):
    import json

    for task, doc in docs.items():
        (folder / task).mkdir(parents=True)
        (folder / task / "probe.json").write_text(json.dumps(doc))


def test_probe_block_states_the_targets_from_the_numbers(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import readme_eval
    finally:
        sys.path.pop(0)
    _write_probe(tmp_path, action=_probe_doc("action", {"dis": 30.0, "hmore_world_local": 35.0}),
                 gait=_probe_doc("gait", {"dis": 20.0, "dis_masked": 24.0, "hmore_world_local": 24.0}))
    block = readme_eval.render_probe(readme_eval.load_probe(str(tmp_path)))
    # action: +5.0 exactly meets ">= +5"; gait: +4.0 misses it, and a tie with the mask is not "above" it
    assert "+5.0 points vs `dis` (target >= +5: met)" in block
    assert "+4.0 points vs `dis` (target >= +5: missed)" in block
    assert "+0.0 points vs `dis_masked` (target > 0: missed)" in block
    assert "35.0 +- 1.0" in block and "commit `0123456789ab`" in block and "AMD EPYC (2 cores)" in block
    assert "1.00 h" in block and "4 classes, chance 25.0 %" in block


def test_check_catches_an_edited_probe_number(tmp_path):
    _write_probe(tmp_path / "res", action=_probe_doc("action", {"dis": 30.0, "hmore_world_local": 35.0}))
    doc = tmp_path / "probe.md"
    doc.write_text("# probe\n<!-- probe:tables:begin -->\n<!-- probe:tables:end -->\n")
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    args = ("--readme", str(readme), "--probe-doc", str(doc), "--probe-results", str(tmp_path / "res"))
    assert run(*args).returncode == 0  # writes the block
    assert "35.0 +- 1.0" in doc.read_text() and run("--check", *args).returncode == 0
    doc.write_text(doc.read_text().replace("35.0 +- 1.0", "36.0 +- 1.0"))
    r = run("--check", *args)
    assert r.returncode == 1 and "differ" in r.stderr
    # a block whose results are missing is an error naming the folder, not an empty table
    r = run("--check", "--readme", str(readme), "--probe-doc", str(doc), "--probe-results", str(tmp_path / "none"))
    assert r.returncode == 1 and "none" in r.stderr
