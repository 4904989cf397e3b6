"""docs/architecture.md names the modules as they are, and the modules keep their size."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
MODULES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "gmoe").rglob("*.py"))
#: no module of gmoe/ is longer (issue 18: one concept per module)
MAX_LINES = 450


def _named() -> set[str]:
    return set(re.findall(r"`(gmoe/[\w/]+\.py)`", PAGE.read_text(encoding="utf-8")))


def test_every_module_the_architecture_page_names_exists():
    missing = sorted(name for name in _named() if not (ROOT / name).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_module_is_named_on_the_architecture_page():
    unnamed = sorted(set(MODULES) - _named())
    assert not unnamed, f"add to docs/architecture.md: {unnamed}"


def test_no_module_is_longer_than_the_limit():
    long = {name: n for name in MODULES
            if (n := len((ROOT / name).read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_importing_gmoe_leaves_the_heavy_optional_libraries_alone():
    # every CLI call and every sweep worker imports gmoe: scikit-learn (with pandas),
    # scipy.stats, matplotlib's pyplot and statsmodels load only when used
    import subprocess
    import sys

    code = ("import sys, gmoe; heavy = ['sklearn', 'scipy.stats', 'matplotlib.pyplot', "
            "'statsmodels']; print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    code = "import sys, gmoe; gmoe.MoERegressor; print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
