"""The documentation is self-contained (issue 13): docs/ holds the method and the design.

- No tracked file outside docs/ may cite the two external documents the code used to cite (the
  method specification and the design notes that lived beside the repository, not in it).
- Every `docs/<file>.md` named anywhere in the repository must exist; every
  `docs/<file>.md#<anchor>` cited anywhere, and every relative link inside docs/, must name a
  heading of that file (GitHub-style anchors: lower-case, punctuation dropped, spaces to '-');
  every `docs/<file>.md §N[.M]` must name a numbered heading.
"""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

# The two external names, spelt so that this file does not match itself.
EXTERNAL = re.compile(r"\b(?:SPEC|DESIGN)(?:\.md\b|\s*(?:§|section\b))")


_DOC = r"(?<![\w/.-])docs/([A-Za-z0-9_.-]+\.md)"  # the repository's docs/, not some other docs/
DOC_FILE = re.compile(_DOC)
DOC_ANCHOR = re.compile(_DOC + r"#([\w-]+)")
DOC_SECTION = re.compile(_DOC + r" §(\d+(?:\.\d+)?)")
# inside docs/: [text](file.md#anchor), [text](#anchor), [text](file.md)
LOCAL_LINK = re.compile(r"\]\((?!https?:)([A-Za-z0-9_.-]+\.md)?(?:#([\w-]+))?\)")


def tracked_files():
    """Tracked text files (relative paths), symlinks and binaries left out; None outside git."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files = {}
    for rel in out.decode().split("\0"):
        path = os.path.join(ROOT, rel)
        if not rel or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data:
            continue
        files[rel] = data.decode("utf-8", errors="replace")
    return files


@pytest.fixture(scope="module")
def files():
    found = tracked_files()
    if found is None:
        pytest.skip("not a git checkout")
    return found


def slug(heading):
    """GitHub's anchor of a heading text."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path):
    """(set of anchors, set of section numbers like "3" or "3.4") of a Markdown file."""
    anchors, numbers, seen = set(), set(), {}
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
                continue
            m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
            if in_code or not m:
                continue
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            anchors.add(base if n == 0 else f"{base}-{n}")
            num = re.match(r"(\d+(?:\.\d+)*)\.?\s", m.group(1))
            if num:
                numbers.add(num.group(1))
    return anchors, numbers


def test_slug_is_github_style():
    assert slug("3. Distillation (stage 1)") == "3-distillation-stage-1"
    assert slug("3.4 Frame-rate alignment") == "34-frame-rate-alignment"
    assert slug("5. Checkpoints, targets, exports and the s3prl upstream") == \
        "5-checkpoints-targets-exports-and-the-s3prl-upstream"


def test_docs_exist():
    for name in ("README.md", "method.md", "architecture.md", "formats.md"):
        assert os.path.isfile(os.path.join(DOCS, name)), f"docs/{name} is missing"


def test_no_external_citations(files):
    bad = []
    for rel, text in sorted(files.items()):
        if rel.startswith("docs/"):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if EXTERNAL.search(line):
                bad.append(f"{rel}:{lineno}: {line.strip()}")
    assert not bad, ("these lines cite documents outside the repository; cite docs/ instead "
                     "(docs/README.md maps the old section numbers):\n" + "\n".join(bad))


def _citations(files):
    """[(where, doc file, anchor or None, section or None)] of every docs/ citation."""
    out = []
    for rel, text in sorted(files.items()):
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{lineno}"
            out += [(where, m.group(1), None, None) for m in DOC_FILE.finditer(line)]
            out += [(where, m.group(1), m.group(2), None) for m in DOC_ANCHOR.finditer(line)]
            out += [(where, m.group(1), None, m.group(2)) for m in DOC_SECTION.finditer(line)]
            if rel.startswith("docs/") and rel.count("/") == 1:
                for m in LOCAL_LINK.finditer(line):
                    target = m.group(1) or os.path.basename(rel)
                    if m.group(1) or m.group(2):
                        out.append((where, target, m.group(2), None))
    return out


def test_cited_doc_anchors_exist(files):
    cites = _citations(files)
    assert any(a for _, _, a, _ in cites), "no docs/ anchor citation found at all"
    cache, bad = {}, []
    for where, doc, anchor, section in cites:
        path = os.path.join(DOCS, doc)
        if not os.path.isfile(path):
            bad.append(f"{where}: docs/{doc} does not exist")
            continue
        anchors, numbers = cache.setdefault(doc, headings(path))
        if anchor and anchor not in anchors:
            bad.append(f"{where}: docs/{doc} has no heading with anchor #{anchor}")
        if section and section not in numbers:
            bad.append(f"{where}: docs/{doc} has no section {section}")
    assert not bad, "\n".join(bad)
