"""The documentation stays complete, linked and about the project.

* every visible option of every command of ``pyro_ebnn.cli.cli`` appears in its section of docs/cli.md;
* every relative link (and its #anchor) in README.md and docs/**/*.md points at something that exists;
* README.md stays short;
* no line of README, docs, configs or experiments narrates the project's working history or cites
  tracker issues;
* every citation in README/docs, ``[000]``-style or author-year, is defined in the README's bibliography.
"""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_MD = DOCS / "cli.md"
README_MAX_LINES = 260
HISTORY = re.compile(r"(?i)\bsessions? ?\d|(this|earlier|previous|next|last) session|issue #?\d")
NUMBERED_CITATION = re.compile(r"\[(\d{3})\]")
AUTHOR_YEAR = re.compile(r"\b([A-Z][A-Za-z\u00C0-\u017F-]+ (?:et al\.|& [A-Z][A-Za-z\u00C0-\u017F-]+)) \(?(\d{4})\)?")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def markdown_files() -> list[Path]:
    return [README] + sorted(DOCS.rglob("*.md"))


def prose(text: str) -> str:
    """The text without fenced code blocks (their lines replaced by empty ones)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


# -- the command line -----------------------------------------------------------------------------

def cli_sections() -> dict[str, str]:
    text = CLI_MD.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def test_every_visible_option_of_every_command_is_in_docs_cli_md():
    from pyro_ebnn.cli import cli

    sections = cli_sections()
    missing = []
    for name, command in sorted(cli.commands.items()):
        section = sections.get(name)
        if section is None:
            missing.append(f"{name}: no '## {name}' section")
            continue
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            for opt in param.opts + param.secondary_opts:
                if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", section):
                    missing.append(f"{name} {opt}")
    assert not missing, ("docs/cli.md lacks (regenerate it: PYTHONPATH=. python docs/cli_md.py): "
                         + ", ".join(missing))


# -- links ------------------------------------------------------------------------------------------

def test_every_relative_link_points_at_an_existing_file_and_anchor():
    broken = []
    for md in markdown_files():
        for target in LINK.findall(prose(md.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):     # http:, https:, mailto:, ...
                continue
            path, _, fragment = target.partition("#")
            dest = md if not path else (md.parent / path).resolve()
            where = f"{md.relative_to(ROOT)} -> {target}"
            if not dest.exists():
                broken.append(where + " (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                broken.append(where + " (no such heading)")
    assert not broken, "broken links:\n  " + "\n  ".join(broken)


# -- length -----------------------------------------------------------------------------------------

def test_readme_stays_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; keep it at most {README_MAX_LINES}, move detail to docs/"


# -- the project speaks of itself only --------------------------------------------------------------

def text_files():
    roots = [README, DOCS, ROOT / "configs", ROOT / "experiments"]
    for root in roots:
        for path in ([root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())):
            if "__pycache__" in path.parts:
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:      # figures and other binary files
                continue


def test_no_working_history_or_tracker_issues():
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
            for path, text in text_files()
            for i, line in enumerate(text.splitlines(), 1) if HISTORY.search(line)]
    assert not hits, ("state results as facts of the project (commit and date), not as its working "
                      "history, and cite no tracker issues:\n  " + "\n  ".join(hits))


# -- citations --------------------------------------------------------------------------------------

def bibliography() -> set[str]:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Bibliography\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, "README.md has no '## Bibliography' section"
    keys = set()
    for line in m.group(1).splitlines():
        if line.startswith("- "):
            keys.update(k.strip() for k in re.findall(r"\*\*([^*]+)\*\*", line))
    return keys


def cited(pattern: re.Pattern, render) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for md in markdown_files():
        text = md.read_text(encoding="utf-8")
        if md == README:
            text = text.split("\n## Bibliography", 1)[0]
        for m in pattern.finditer(text):
            out.setdefault(render(m), set()).add(str(md.relative_to(ROOT)))
    return out


@pytest.mark.parametrize("kind", ["numbered", "author-year"])
def test_every_citation_is_defined_in_the_bibliography(kind):
    keys = bibliography()
    if kind == "numbered":
        used = cited(NUMBERED_CITATION, lambda m: f"[{m.group(1)}]")
    else:
        used = cited(AUTHOR_YEAR, lambda m: f"{m.group(1)} {m.group(2)}")
    undefined = {c: sorted(files) for c, files in used.items() if c not in keys}
    assert used, f"no {kind} citation found; is the pattern right?"
    assert not undefined, f"citations missing from the README's bibliography: {undefined}"
