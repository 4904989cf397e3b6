"""The ``gmoe`` command line: list, run, rates, plot, reproduce, fit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .rates import CENTERS

__all__ = ["main"]


class CLIError(Exception):
    """An error to print as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message}")


def _default_out(name: str, quick: bool) -> Path:
    return Path("results") / (name + ("-quick" if quick else ""))


def _has_results(folder: Path) -> bool:
    return (folder / "results.jsonl").exists() or (folder / "results.jsonl.gz").exists()


def _cmd_list(args) -> int:
    from .config import list_configs

    for name, desc in list_configs().items():
        print(f"{name:24s} {desc}")
    return 0


def _write_rates(out_dir: Path, center: str) -> str:
    from .plots import rate_table

    table = rate_table(out_dir, center=center)
    table.to_csv(out_dir / "rates.csv", index=False)
    text = _format_rates(table)
    (out_dir / "rates.txt").write_text(text + "\n")
    return text


def _format_rates(table) -> str:
    lines = [f"{'sweep':18s} {'metric':14s} {'slope':>8s} {'95% CI':>20s} {'constant':>10s} "
             f"{'theory':>7s}  agrees  failed  capped"]
    for row in table.itertuples():
        ci = f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
        theory = "" if row.theory != row.theory else f"{row.theory:g}"
        agrees = {True: "yes", False: "NO", None: ""}.get(row.agrees, "")
        label = row.label or "-"
        capped = "" if row.capped != row.capped else f"{row.capped:.2f}"
        lines.append(f"{label[:18]:18s} {row.metric:14s} {row.slope:8.3f} {ci:>20s} "
                     f"{row.constant:10.4g} {theory:>7s}  {agrees:6s}  {row.failed:6.2f}  "
                     f"{capped:>6s}".rstrip())
    return "\n".join(lines)


def _cmd_run(args) -> int:
    from .config import load_config
    from .plots import plot_sweep
    from .sweep import run_sweep

    configs = load_config(args.config, quick=args.quick)
    out = Path(args.out) if args.out else _default_out(configs[0].name, args.quick)
    result = run_sweep(configs, out, n_jobs=args.n_jobs, resume=not args.no_resume,
                       progress=not args.no_progress, backend=args.backend,
                       scheduler=args.scheduler)
    print(result.summary())
    print(_write_rates(out, args.center))
    files = plot_sweep(out, center=args.center)
    for path in files:
        if path.suffix == ".png":
            print(f"plot: {path}")
    return 0


def _cmd_rates(args) -> int:
    from .plots import rate_table

    out = Path(args.dir)
    if not _has_results(out):
        raise CLIError(f"gmoe rates: no results.jsonl in {out}")
    table = rate_table(out, metrics=args.metric or None, center=args.center)
    # rate_table gives every metric the results hold a row, and skips the others
    missing = [m for m in args.metric or [] if m not in set(table.get("metric", []))]
    if missing:
        raise CLIError(f"gmoe rates: no metric {missing[0]!r} in {out}")
    print(_format_rates(table))
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot_sweep

    out = Path(args.dir)
    if not _has_results(out):
        raise CLIError(f"gmoe plot: no results.jsonl in {out}")
    for path in plot_sweep(out, metrics=args.metric or None, center=args.center,
                           dest=args.dest):
        print(f"plot: {path}")
    return 0


def _cmd_fit(args) -> int:
    import numpy as np

    from .estimator import MoERegressor

    path = Path(args.data)
    if not path.is_file():
        raise CLIError(f"gmoe fit: no such file: {path}")
    try:
        data = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
    except ValueError as exc:
        raise CLIError(f"gmoe fit: cannot read {path} as CSV with a header: {exc}") from None
    names = list(data.dtype.names or [])
    ycol = args.y or names[-1]
    if ycol not in names:
        raise CLIError(f"gmoe fit: no column {ycol!r} in {path}; columns: {', '.join(names)}")
    xcols = [c for c in names if c != ycol]
    if not xcols:
        raise CLIError(f"gmoe fit: {path} needs at least one feature column besides {ycol!r}")
    X = np.column_stack([data[c] for c in xcols])
    y = np.asarray(data[ycol], dtype=float)
    reg = MoERegressor(n_experts=args.k, gate=args.gate, n_init=args.n_init,
                       random_state=args.seed).fit(X, y)
    print(f"features: {', '.join(xcols)}; response: {ycol}")
    print(reg.summary())
    if args.save:
        import json

        Path(args.save).write_text(json.dumps(reg.result_.to_dict(), indent=1))
        print(f"saved: {args.save}")
    return 0


def _cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    table = reproduce(quick=args.quick, n_jobs=args.n_jobs, out_root=Path(args.out),
                      figures=Path(args.figures) if args.figures else None,
                      names=args.name or None, progress=not args.no_progress)
    print(_format_rates(table))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gmoe", description="Gaussian mixture-of-experts simulations.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True
    p = sub.add_parser("list", help="list the built-in simulation configs")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run a sweep, write results, the rate table and plots")
    p.add_argument("config", help="built-in config name or path to a TOML file")
    p.add_argument("--quick", action="store_true", help="use the config's [quick] profile")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (default: all)")
    p.add_argument("--out", help="output folder (default results/NAME[-quick])")
    p.add_argument("--no-resume", action="store_true", help="start afresh")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--center", default="median", choices=list(CENTERS))
    p.add_argument("--backend", default="loky", choices=["loky", "threading", "dask"])
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("rates", help="print the rate table of a results folder")
    p.add_argument("dir")
    p.add_argument("--metric", action="append",
                   help="metric to fit (repeatable; default: the losses and the config's "
                        "[theory] metrics)")
    p.add_argument("--center", default="median", choices=list(CENTERS))
    p.set_defaults(func=_cmd_rates)

    p = sub.add_parser("plot", help="draw the convergence-rate plots of a results folder")
    p.add_argument("dir")
    p.add_argument("--metric", action="append", help="metric to plot (repeatable)")
    p.add_argument("--center", default="median", choices=list(CENTERS))
    p.add_argument("--dest", default=None, help="folder for the figures (default: DIR)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("reproduce", help="run every built-in config and redraw the figures")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-jobs", type=int, default=-1)
    p.add_argument("--out", default="results")
    p.add_argument("--figures", default=None, help="also copy figures to this folder")
    p.add_argument("--name", action="append", help="only this built-in config (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("fit", help="fit a mixture of experts to a CSV file (header row)")
    p.add_argument("data", help="CSV file; the last column is y unless --y says otherwise")
    p.add_argument("--k", type=int, default=2, help="number of experts")
    p.add_argument("--y", default=None, help="name of the response column")
    p.add_argument("--gate", default="softmax")
    p.add_argument("--n-init", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the fit as JSON to this file")
    p.set_defaults(func=_cmd_fit)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``gmoe`` console script."""
    from .config import ConfigError
    from .sweep import ResultsMismatchError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except CLIError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (ConfigError, ResultsMismatchError, ValueError, FileNotFoundError,
            ImportError) as exc:
        print(f"gmoe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmoe: interrupted; finished tasks are saved, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
