"""Load a gmoe module as it was at another git revision, for old-against-new timings.

``load("f50420f", "gmoe/density.py")`` returns a module object built from that
revision's source, its relative imports pointed at the installed package. Used by the
benchmarks that print old/new ratios measured in one run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(rev: str, path: str) -> types.ModuleType:
    src = subprocess.check_output(["git", "show", f"{rev}:{path}"], cwd=ROOT, text=True,
                                  stderr=subprocess.DEVNULL)
    package = ".".join(Path(path).with_suffix("").parts[:-1])     # gmoe or gmoe.gates
    parent = package.rsplit(".", 1)[0]
    src = re.sub(r"^(\s*)from \.\.(\w)", rf"\1from {parent}.\2", src, flags=re.M)
    src = re.sub(r"^(\s*)from \.(\w)", rf"\1from {package}.\2", src, flags=re.M)
    name = f"_baseline_{rev}_{Path(path).stem}"
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:{path}"
    sys.modules[name] = module
    exec(compile(src, module.__file__, "exec"), module.__dict__)
    return module
