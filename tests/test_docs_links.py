"""Every relative link and image in README.md and docs/*.md points to a file or folder of the repository.

A link is markdown's ``[text](target)`` or ``![alt](target)``; targets with a scheme (``https:``,
``mailto:``) and pure anchors (``#section``) are not files and are skipped; ``path#anchor`` is checked
for the path. Fenced code blocks and inline code are ignored (they hold code, not links).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def relative_links(text: str) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def test_the_checker_sees_links_and_skips_code():
    text = ("[a](docs/x.md#sec) ![img](images/p.png) [web](https://e.org) [anchor](#top)\n"
            "`[not](a link)`\n```\n[nor](this.md)\n```\n")
    assert relative_links(text) == ["docs/x.md", "images/p.png"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    missing = [t for t in relative_links(doc.read_text()) if not (doc.parent / t).exists()]
    assert not missing, f"{doc.relative_to(ROOT)}: links to missing files: {missing}"


def test_the_docs_the_readme_sends_a_newcomer_to_exist():
    links = set(relative_links((ROOT / "README.md").read_text()))
    for doc in ("docs/kernels.md", "docs/benchmarks.md", "docs/ops.md", "docs/method.md",
                "docs/images/demo_real.png", "docs/images/demo_synthetic.png"):
        assert doc in links, doc
