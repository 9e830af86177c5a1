"""The performance tables of docs/benchmarks.md are generated from benchmarks/results/*.csv
(benchmarks/readme_tables.py).

test_readme_in_sync is the CI check: it fails, printing the diff, when a results row was added or
docs/benchmarks.md edited by hand without regenerating (test_check_fails_on_a_stale_copy shows it can).
The other tests pin what "latest clean row" means on small hand-made rows.
"""
from __future__ import annotations

import csv
import json

import pytest

from benchmarks import readme_tables as rt


def _row(**kw):
    base = dict(op="sobel", size="8x2x368x496", shape="8x2x368x496", dtype="float32", kind="fwd", impl="cpu",
                status="ok", median_ms="1.5", iqr_ms="0.03", runs="30", x_ref="10.0", mode="default",
                timestamp="2026-11-21T11:51:56+00:00", device="Test CPU (2 cores)", device_type="cpu",
                threads="2", loadavg="1.0", commit="aaaaaaa", torch="2.13.0+cpu")
    base.update(kw)
    return base


def _write(path, rows):
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


def test_readme_in_sync(capsys):
    rc = rt.main(["--check"])
    out = capsys.readouterr()
    assert rc == 0, ("docs/benchmarks.md is out of sync with benchmarks/results: run python3 -m benchmarks.readme_tables\n"
                     + out.out[-4000:] + out.err)


def test_tables_live_in_docs_benchmarks_not_the_readme():
    assert rt.DOC == rt.common.REPO_ROOT / "docs" / "benchmarks.md"
    doc = rt.DOC.read_text()
    for s in rt.SECTIONS + ("tracking",):
        assert doc.count(rt.BEGIN.format(s)) == 1 and doc.count(rt.END.format(s)) == 1, s
    assert "perf:" not in (rt.common.REPO_ROOT / "README.md").read_text()


def test_check_fails_on_a_stale_copy(tmp_path, capsys):
    """The CI check is not vacuous: the repository's docs/benchmarks.md with one generated cell edited,
    or one generated line dropped, is reported out of sync (and left as it was)."""
    doc = rt.DOC.read_text()
    cell = "| `sobel` | 1x3x512x512 | 1x3x512x512 | fwd | 2 | "
    assert cell in doc
    for stale in (doc.replace(cell, cell + "9", 1),
                  "\n".join(l for l in doc.split("\n") if "Against the peer libraries" not in l)):
        assert stale != doc
        path = tmp_path / "benchmarks.md"
        path.write_text(stale)
        assert rt.main(["--check", "--doc", str(path)]) == 1
        assert "out of sync" in capsys.readouterr().err
        assert path.read_text() == stale


def test_latest_clean_row_per_configuration():
    rows = [
        _row(median_ms="9.0", timestamp="2026-11-01T00:00:00+00:00", commit="old1234"),
        _row(median_ms="2.0", timestamp="2026-11-02T00:00:00+00:00", commit="new1234"),
        _row(median_ms="1.0", timestamp="2026-11-03T00:00:00+00:00", commit="new1234-dirty"),  # never shown
        _row(median_ms="3.0", timestamp="2026-11-04T00:00:00+00:00", commit="unknown"),  # never shown
        _row(impl="reference", median_ms="20.0", x_ref="1.0", timestamp="2026-11-01T00:00:00+00:00", commit="old1234"),
        _row(threads="1", median_ms="4.0", commit="old1234"),  # another configuration: kept beside
    ]
    got = rt.latest_clean(rows)
    cpu2 = [r for r in got if r["impl"] == "cpu" and r["threads"] == "2"]
    assert [r["median_ms"] for r in cpu2] == ["2.0"]
    assert {r["commit"] for r in got} == {"old1234", "new1234"}
    assert len(got) == 3


def test_render_tables_and_summaries(tmp_path):
    rows = [
        _row(op="corr_block", size="368x496", shape="D=256", kind="fwdbwd", impl="cpu-otf", median_ms="1500",
             x_ref="0.8", peak_mib="112"),
        _row(op="corr_block", size="368x496", shape="D=256", kind="fwdbwd", impl="reference", median_ms="1200",
             x_ref="", peak_mib="272"),
        _row(median_ms="1.5", iqr_ms="0.03"),
        _row(impl="kornia", median_ms="70", x_ref="0.5"),
        # bench_model's spelling: "backend" for the implementation, ratio_vs_reference, no kind or size
        _row(family="model", op="train_step", impl="", backend="auto", size="", kind="", x_ref="", status="",
             ratio_vs_reference="1.8", shape="4x3x256x256 iters 12", median_ms="900"),
        _row(family="model", op="train_step", impl="", backend="reference", size="", kind="", x_ref="",
             ratio_vs_reference="1.0", shape="4x3x256x256 iters 12", median_ms="1620"),
    ]
    _write(tmp_path / "dev.csv", rows)
    readme = tmp_path / "README.md"
    text = ("# x\nkept\n<!-- perf:edges:begin -->\nstale\n<!-- perf:edges:end -->\nmiddle\n"
            "<!-- perf:corr:begin -->\n<!-- perf:corr:end -->\n<!-- perf:model:begin -->\n<!-- perf:model:end -->\n"
            "<!-- perf:skeleton:begin -->\n<!-- perf:skeleton:end -->\nend\n")
    readme.write_text(text)
    assert rt.main(["--check", "--readme", str(readme), "--results", str(tmp_path)]) == 1
    assert readme.read_text() == text  # --check never writes
    assert rt.main(["--readme", str(readme), "--results", str(tmp_path)]) == 0
    new = readme.read_text()
    assert "stale" not in new and new.startswith("# x\nkept\n") and new.endswith("end\n") and "middle" in new
    assert "| `sobel` | 8x2x368x496 | 8x2x368x496 | fwd | 2 | 1.5 | 70 | 10x | aaaaaaa | 1 |" in new
    # fwdbwd and fwd+bwd are one direction; the slower fused backward is said, with the same-run ratio
    assert "| `corr_block` | 368x496 | D=256 | fwd+bwd | 2 | 1500 · 112 MiB | 1200 · 272 MiB | 0.8x |" in new
    assert "slower than the reference measured in the same run (ours vs the reference): `corr_block` 368x496 D=256 cpu-otf 0.8x" in new
    assert "Interquartile range of our rows with at least 5 runs: 2% to 2% of the median" in new
    assert "| `train_step` |  | 4x3x256x256 iters 12 | - | 2 | 900 | 1620 | 1.8x | aaaaaaa | 1 |" in new
    assert "<!-- perf:corr:begin -->\n" + rt.HEADER + "\n**Test CPU (2 cores)**" in new
    assert "<!-- perf:skeleton:begin -->\n" + rt.HEADER + "\nNo clean rows yet.\n<!-- perf:skeleton:end -->" in new
    assert rt.main(["--check", "--readme", str(readme), "--results", str(tmp_path)]) == 0


def test_rows_without_markers_or_unpaired_markers_are_errors(tmp_path, capsys):
    _write(tmp_path / "dev.csv", [_row(op="skeleton_match")])
    readme = tmp_path / "README.md"
    readme.write_text("<!-- perf:edges:begin -->\n<!-- perf:edges:end -->\n")
    assert rt.main(["--check", "--readme", str(readme), "--results", str(tmp_path)]) == 1
    assert "perf:skeleton:begin" in capsys.readouterr().err
    readme.write_text("<!-- perf:skeleton:end -->\n<!-- perf:skeleton:begin -->\n")
    assert rt.main(["--readme", str(readme), "--results", str(tmp_path)]) == 1
    assert "expected one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rt.main(["--readme", str(tmp_path / "missing.md")])


def test_tracking_block_only_from_a_clean_run(tmp_path):
    summary = {"shift": {"n": 20, "spearman": 0.98045}, "all": {"n": 54, "spearman": 0.99314}}
    (tmp_path / "chamfer_tracking.json").write_text(json.dumps({"summary": summary, "commit": "abc1234-dirty",
                                                                "device": "Test CPU", "image": "mask"}))
    assert "No clean tracking run yet" in rt.render_tracking(tmp_path)
    (tmp_path / "chamfer_tracking.json").write_text(json.dumps({"summary": summary, "commit": "abc1234",
                                                                "device": "Test CPU", "image": "mask"}))
    got = rt.render_tracking(tmp_path)
    assert "Spearman rank correlation 0.993 over all 54 deformations; per family: shift 0.98 (n 20)" in got
    assert "commit abc1234" in got
    assert "No tracking results yet" in rt.render_tracking(tmp_path / "missing")


def test_peer_lines_only_from_the_same_run():
    ours = _row(op="canny", impl="cpu", median_ms="2.0", x_ref="")
    faster_peer = _row(op="canny", impl="opencv", median_ms="1.0", x_ref="")
    slower_peer = _row(op="canny", impl="kornia", median_ms="9.0", x_ref="")
    other_run = _row(op="canny", impl="opencv", median_ms="1.0", x_ref="", timestamp="2026-11-22T00:00:00+00:00")
    got = rt.peer_lines([ours, faster_peer, slower_peer])
    assert got == ["- Against the peer libraries measured in the same run: ours is the fastest in 0 of 1 rows that "
                   "have one; a peer is faster in `canny` 8x2x368x496 fwd 2 thr cpu: OpenCV 1 ms, ours 2 ms."]
    assert rt.peer_lines([ours, slower_peer]) == [
        "- Against the peer libraries measured in the same run: ours is the fastest in all 1 rows that have one."]
    assert rt.peer_lines([ours, other_run]) == []  # another run's OpenCV time is no comparison
    assert rt.peer_lines([ours, _row(op="canny", impl="reference", median_ms="1.0")]) == []  # the oracle is no peer


def test_backward_line_only_from_same_run_comparisons():
    no_cmp = [_row(op="chamfer_distance", kind="fwd+bwd", x_ref="")]
    assert not any("forward+backward" in s.lower() for s in rt.summary_lines(no_cmp, "chamfer"))
    fast = [_row(kind="fwd+bwd", x_ref="1.5")]
    assert rt.summary_lines(fast, "corr") == [
        "- Every forward+backward row of ours with a same-run comparison is at least as fast as the reference."]
