"""The documentation cannot rot: its examples run and the docs build.

- Every ``python`` code block of README.md and of the pages under docs/ runs, page by
  page, top to bottom, in one namespace per page and a fresh working directory, as a
  reader who copies them in order would run them.
- A TOML block with a file name as caption (``{code-block} toml`` with
  ``:caption: my-sim.toml``) is saved under that name first, as the page tells the
  reader to do.
- Every ``gmoe ...`` command of a shell block (bash, console, shell, sh) runs in
  process, except those that take hours, which are checked instead: ``gmoe run`` of a
  built-in config or of a full (non ``--quick``) sweep parses its arguments and loads
  and validates its config; ``gmoe rates`` / ``gmoe plot`` of a folder the page did
  not make, and ``gmoe reproduce``, parse their arguments. ``gmoe run NAME --quick``
  of the built-in softmax config runs in tests/test_cli.py. Install lines (pip,
  venv, ...) are not run.
- A block preceded by the MyST comment ``% doc-test: skip`` is not run.
- The docstring examples of every gmoe module pass (doctest).
- Every public name is in the API reference, and, where Sphinx is installed (the
  ``docs`` extra), ``sphinx-build -W`` builds the docs.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import pkgutil
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import gmoe  # noqa: E402
import gmoe.gates  # noqa: E402
from gmoe.cli import build_parser, main  # noqa: E402
from gmoe.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "console", "shell", "sh"}
SKIP_MARK = "% doc-test: skip"


@dataclass
class Block:
    """One code block of a page: its language, code, first line and caption."""

    lang: str
    code: str
    line: int
    caption: str | None = None
    skip: bool = False


# ----------------------------------------------------------------- extraction
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\{(code-block|code|sourcecode)\}\s*(?P<lang>\S*)")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")


def _closes(line: str, fence: str) -> bool:
    """True if ``line`` closes a block opened by ``fence``."""
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def markdown_blocks(text: str) -> list[Block]:
    """Fenced code blocks of a Markdown / MyST page."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        prev = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        end = i + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        body = lines[i + 1:end]
        first = i + 2
        directive = _DIRECTIVE.match(info)
        lang = directive.group("lang") if directive else info.split()[0] if info else ""
        caption = None
        if directive or info.startswith("{"):
            while body and _OPTION.match(body[0]):
                opt = _OPTION.match(body[0])
                if opt.group("key") == "caption":
                    caption = opt.group("value").strip()
                body, first = body[1:], first + 1
            if body and not body[0].strip():
                body, first = body[1:], first + 1
        if not info.startswith("{") or directive:
            blocks.append(Block(lang.lower(), "\n".join(body) + "\n", first, caption,
                                skip=prev == SKIP_MARK))
        i = end + 1
    return blocks


_RST_BLOCK = re.compile(r"^(?P<indent>\s*)\.\. (code-block|code|sourcecode)::\s*(?P<lang>\S+)")


def rst_blocks(text: str) -> list[Block]:
    """``.. code-block:: LANG`` blocks of a reStructuredText page."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = _RST_BLOCK.match(line)
        if not m:
            continue
        base = len(m.group("indent"))
        j, caption = i + 1, None
        while j < len(lines) and lines[j].strip().startswith(":"):
            opt = _OPTION.match(lines[j].strip())
            if opt and opt.group("key") == "caption":
                caption = opt.group("value").strip()
            j += 1
        body = []
        start = None
        for k in range(j, len(lines)):
            text_k = lines[k]
            if text_k.strip() and len(text_k) - len(text_k.lstrip()) <= base:
                break
            if start is None and text_k.strip():
                start = k
            if start is not None:
                body.append(text_k)
        if start is None:
            continue
        indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
        code = "\n".join(b[indent:] for b in body).rstrip() + "\n"
        blocks.append(Block(m.group("lang").lower(), code, start + 1, caption))
    return blocks


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return rst_blocks(text) if path.suffix == ".rst" else markdown_blocks(text)


def _runnable(block: Block) -> bool:
    return not block.skip and (block.lang in PYTHON or block.lang in SHELL
                               or (block.lang == "toml" and bool(block.caption)))


def doc_pages() -> list[Path]:
    pages = [ROOT / "README.md"]
    pages += sorted(p for p in DOCS.rglob("*") if p.suffix in (".md", ".rst")
                    and "_build" not in p.parts)
    return [p for p in pages if any(_runnable(b) for b in page_blocks(p))]


PAGES = doc_pages()


# ------------------------------------------------------------------ running
def gmoe_commands(code: str) -> list[list[str]]:
    """The ``gmoe`` commands of a shell block, as argument lists (``$`` prompts and
    ``&&`` chains allowed; comments dropped)."""
    commands = []
    for line in code.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        for part in line.split("&&"):
            tokens = shlex.split(part, comments=True)
            if tokens and tokens[0] == "gmoe":
                commands.append(tokens[1:])
    return commands


def run_gmoe(argv: list[str], workdir: Path, where: str) -> str:
    """Run (or, for the long ones, check) one documented ``gmoe`` command."""
    args = build_parser().parse_args(argv)  # raises on an undocumented option
    if args.command == "run":
        local = (workdir / args.config).is_file()
        if not (args.quick and local):
            # a full sweep or a built-in one: check that the config loads
            configs = load_config(args.config, quick=args.quick)
            assert configs, f"{where}: gmoe {' '.join(argv)}: no config"
            return "checked"
    elif args.command in ("rates", "plot"):
        if not (workdir / args.dir / "results.jsonl").is_file():
            return "checked"
    elif args.command == "reproduce":
        return "checked"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        argv_run = argv + (["--no-progress"] if args.command == "run" else [])
        code = main(argv_run)
    assert code == 0, f"{where}: gmoe {' '.join(argv)} exited {code}\n{err.getvalue()}"
    return "ran"


def run_page(path: Path, workdir: Path) -> dict:
    """Run every block of a page in order; returns counts of what ran."""
    namespace: dict = {"__name__": "__docs__"}
    counts = {"python": 0, "files": 0, "commands_run": 0, "commands_checked": 0}
    rel = path.relative_to(ROOT)
    for block in page_blocks(path):
        if block.skip:
            continue
        where = f"{rel}:{block.line}"
        if block.lang == "toml" and block.caption:
            (workdir / block.caption).write_text(block.code, encoding="utf-8")
            counts["files"] += 1
        elif block.lang in PYTHON:
            source = "\n" * (block.line - 1) + block.code  # tracebacks show page lines
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*non-interactive.*")
                exec(compile(source, str(rel), "exec"), namespace)  # noqa: S102
            counts["python"] += 1
        elif block.lang in SHELL:
            for argv in gmoe_commands(block.code):
                how = run_gmoe(argv, workdir, where)
                counts["commands_run" if how == "ran" else "commands_checked"] += 1
    plt.close("all")
    return counts


#: Files a page must leave behind: the newcomer paths run for real, not just parse.
LEAVES = {
    "docs/user_guide/fitting.md": ["data.csv", "fit.json"],
    "docs/user_guide/sweeps.md": ["my-sim.toml", "results/my-sim-quick/results.jsonl",
                                  "results/my-sim-quick/rates.csv",
                                  "results/my-sim-quick/my-sim_loss.png"],
    "docs/user_guide/rates.md": ["results/tiny/results.jsonl", "figures/tiny_loss.png"],
}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    counts = run_page(page, tmp_path)
    assert sum(counts.values()) > 0
    missing = [f for f in LEAVES.get(str(page.relative_to(ROOT)), [])
               if not (tmp_path / f).is_file()]
    assert not missing, f"{page.name} did not make {missing}"


def test_readme_examples_run_without_warnings(tmp_path, monkeypatch):
    # the first thing a new user runs: its fits must not end in a warning (the old
    # example's data had a hard switch, and its fit a runaway gate slope)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run_page(ROOT / "README.md", tmp_path)


def test_the_pages_with_examples_are_all_found():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    expected = {"README.md", "docs/getting_started.md", "docs/user_guide/models.md",
                "docs/user_guide/sampling.md", "docs/user_guide/fitting.md",
                "docs/user_guide/losses.md", "docs/user_guide/sweeps.md",
                "docs/user_guide/rates.md", "docs/reproducing.md"}
    assert expected <= names, expected - names


# ------------------------------------------------------------- the extractor
def test_extractor_reads_fences_captions_skips_and_rst():
    md = ("text\n```python\nx = 1\n```\n\n% doc-test: skip\n```python\nraise\n```\n"
          "```{code-block} toml\n:caption: a.toml\n\nk = 1\n```\n"
          "```{figure} img.png\n:alt: a\n```\n````bash\ngmoe list && pip install .\n````\n")
    blocks = markdown_blocks(md)
    assert [(b.lang, b.skip, b.caption) for b in blocks] == [
        ("python", False, None), ("python", True, None), ("toml", False, "a.toml"),
        ("bash", False, None)]
    assert blocks[2].code == "k = 1\n" and blocks[0].line == 3
    assert gmoe_commands(blocks[3].code) == [["list"]]
    rst = "Title\n\n.. code-block:: python\n\n   y = 2\n   z = y\n\nafter\n"
    (block,) = rst_blocks(rst)
    assert block.lang == "python" and block.code == "y = 2\nz = y\n" and block.line == 5


# ----------------------------------------------------------------- doctests
MODULES = sorted(m.name for m in pkgutil.walk_packages(gmoe.__path__, "gmoe."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS
                                   | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


# ------------------------------------------------------------ API reference
def _public_names() -> set[str]:
    return set(gmoe.__all__) | set(gmoe.gates.__all__)


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    missing = sorted(n for n in _public_names() if not re.search(rf"\b{n}\b", text))
    assert not missing, f"add to docs/api.rst: {missing}"


# -------------------------------------------------------------------- build
def test_docs_build_with_warnings_as_errors(tmp_path):
    for name in ("sphinx", "myst_parser", "numpydoc", "furo"):
        pytest.importorskip(name, reason="the docs extra is not installed")
    html = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(html)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (html / "api.html").read_text(encoding="utf-8")
    undocumented = sorted(n for n in _public_names()
                          if f'id="gmoe.{n}"' not in api and f'id="gmoe.gates.{n}"' not in api)
    assert not undocumented, f"no API entry for {undocumented}"
    for page in ("index", "getting_started", "theory", "reproducing", "user_guide/fitting"):
        assert (html / f"{page}.html").is_file()
