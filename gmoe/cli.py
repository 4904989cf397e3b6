"""The ``gmoe`` command line: list, run, rates, plot, reproduce, fit, select."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ._cli_csv import CLIError, check_output, read_table
from .rates import CENTERS

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message}")


def _results_dir(args, command: str) -> Path:
    """The results folder a command reads (``gmoe rates``, ``gmoe plot``)."""
    from .records import RESULTS_FILE, has_results

    out = Path(args.dir)
    if not has_results(out):
        raise CLIError(f"gmoe {command}: no {RESULTS_FILE} in {out}")
    return out


def _cmd_list(args) -> int:
    from .config import list_configs

    for name, desc in list_configs().items():
        print(f"{name:24s} {desc}")
    return 0


def _cmd_run(args) -> int:
    from .config import load_config
    from .plots import plot_sweep
    from .records import results_folder
    from .sweep import run_sweep
    from .tables import rate_table, write_rates

    configs = load_config(args.config, quick=args.quick)
    out = Path(args.out) if args.out else results_folder(configs[0].name, args.quick)
    result = run_sweep(configs, out, n_jobs=args.n_jobs, resume=not args.no_resume,
                       quick=args.quick, progress=not args.no_progress, backend=args.backend,
                       scheduler=args.scheduler)
    # every file is written before anything is printed: a reader that goes away
    # (`gmoe run ... | head`) cannot leave the folder without its table or plots
    rates = write_rates(out, rate_table(out, center=args.center))
    files = plot_sweep(out, center=args.center)
    print(result.summary())
    print(rates)
    for path in files:
        if path.suffix == ".png":
            print(f"plot: {path}")
    return 0


def _cmd_rates(args) -> int:
    from .tables import format_rates, rate_table

    out = _results_dir(args, "rates")
    # an unknown --metric is rate_table's ValueError: one line, exit 2
    table = rate_table(out, metrics=args.metric or None, center=args.center)
    print(format_rates(table))
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot_sweep

    out = _results_dir(args, "plot")
    for path in plot_sweep(out, metrics=args.metric or None, center=args.center,
                           dest=args.dest):
        print(f"plot: {path}")
    return 0


def _gate_from_options(args):
    """The gate that ``--gate`` and its options describe (``make_gate`` checks them)."""
    import inspect

    from .gates import GATES, make_gate

    spec = {"name": args.gate}
    options = {"K": args.K, "rank_by": args.rank_by, "tau": args.tau,
               "activation": args.activation, "learn_tau": False if args.fixed_tau else None}
    spec.update({key: value for key, value in options.items() if value is not None})
    try:
        return make_gate(spec)
    except ValueError as exc:
        if args.gate not in GATES:
            raise CLIError(f"gmoe fit: --gate: {exc}") from None
        # say it in the command's words: which option the gate lacks or does not take
        accepted = inspect.signature(GATES[args.gate]).parameters
        flag = {"learn_tau": "--fixed-tau"}
        alien = [flag.get(k, "--" + k.replace("_", "-")) for k in spec if k != "name"
                 and k not in accepted]
        missing = ["--" + k for k, p in accepted.items() if p.default is p.empty
                   and k not in spec]
        if alien:
            raise CLIError(f"gmoe fit: the {args.gate} gate takes no {', '.join(alien)}") from None
        if missing:
            raise CLIError(f"gmoe fit: the {args.gate} gate needs {', '.join(missing)}") from None
        raise CLIError(f"gmoe fit: {exc}") from None


@contextlib.contextmanager
def _fit_progress(args):
    """A tqdm bar on stderr over the fit's EM runs and polishes (only on a terminal,
    and not with --no-progress); yields the fit's ``progress`` callback or None."""
    if args.no_progress:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=f"gmoe fit, k={args.k}", unit="run", file=sys.stderr,
               disable=None, leave=False, dynamic_ncols=True)

    def progress(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.set_postfix_str(label, refresh=False)
        bar.update(done - bar.n)

    try:
        yield None if bar.disable else progress
    finally:
        bar.close()


def _cmd_fit(args) -> int:
    import warnings

    from .estimator import MoERegressor

    path = Path(args.data)
    if not path.is_file():
        raise CLIError(f"gmoe fit: no such file: {path}")
    if args.save:  # before the fit, not after it
        check_output(args.save, "--save", "fit")
    X, y, w, xcols, ycol = read_table(path, header=not args.no_header,
                                       index_col=args.index_col, y_col=args.y,
                                       weight_col=args.weights)
    gate = _gate_from_options(args)
    with warnings.catch_warnings(), _fit_progress(args) as progress:
        warnings.simplefilter("always")  # every warning of the fit, one line each (main)
        reg = MoERegressor(n_experts=args.k, gate=gate, n_init=args.n_init,
                           random_state=args.seed).fit(X, y, sample_weight=w,
                                                       progress=progress)
    print(f"features: {', '.join(xcols)}; response: {ycol}")
    print(reg.summary())
    if args.save:
        import json

        Path(args.save).write_text(json.dumps(reg.result_.to_dict(), indent=1))
        print(f"saved: {args.save}")
    if not reg.result_.success:
        print(f"gmoe fit: the fit failed: {reg.result_.reason}", file=sys.stderr)
        return 1
    return 0


def _cmd_select(args) -> int:
    from .selection.cli import check_picture, select_command

    path = Path(args.data)
    if not path.is_file():
        raise CLIError(f"gmoe select: no such file: {path}")
    if args.k_max < 1:
        raise CLIError(f"gmoe select: --k-max must be an integer >= 1, got {args.k_max}")
    out = check_output(args.out or f"{path.stem}_dendrogram.png", "--out", "select")
    try:
        check_picture(out)
    except ValueError as exc:
        raise CLIError(f"gmoe select: {exc}") from None
    try:
        X, y, w, xcols, ycol = read_table(path, header=not args.no_header,
                                           index_col=args.index_col, y_col=args.y,
                                           weight_col=args.weights)
    except CLIError as exc:  # the reader speaks as gmoe fit
        raise CLIError(str(exc).replace("gmoe fit:", "gmoe select:", 1)) from None
    text, failed = select_command(X, y, xcols, ycol, k_max=args.k_max, method=args.method,
                                  out=out, n_init=args.n_init, seed=args.seed,
                                  sample_weight=w)
    if failed:  # as gmoe fit: exit status 1, one line
        print(f"gmoe select: {failed}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _cmd_repair(args) -> int:
    from .records import repair_results

    print(repair_results(args.dir).summary())
    return 0


def _cmd_reproduce(args) -> int:
    from .reproduce import reproduce
    from .tables import format_rates

    table = reproduce(quick=args.quick, n_jobs=args.n_jobs, out_root=Path(args.out),
                      figures=Path(args.figures) if args.figures else None,
                      names=args.name or None, progress=not args.no_progress)
    print(format_rates(table))
    return 0


#: ``--weights`` of ``gmoe fit`` and ``gmoe select``.
WEIGHTS_HELP = ("a column of sample weights (frequency weights, >= 0), by name or position "
                "from 0; it is not a feature (default: every row weighs 1)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .gates import GATES
    from .gates.activation import ACTIVATIONS
    from .gates.topk import RANK_BY

    centers = ", ".join(CENTERS)
    center_help = (f"per-n summary that is plotted and fitted: {centers} (default: median)")
    parser = _Parser(prog="gmoe", description="Gaussian mixtures of experts: simulation "
                                                 "sweeps, their rates and plots, and fits.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the gmoe version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND",
                                help="one of these (gmoe COMMAND --help for its options):")
    sub.required = True
    p = sub.add_parser("list", help="list the built-in simulation configs")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run a sweep, write results, the rate table and plots")
    p.add_argument("config", help="built-in config name or path to a TOML file")
    p.add_argument("--quick", action="store_true", help="use the config's [quick] profile")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (default: all)")
    p.add_argument("--out", help="output folder (default results/NAME[-quick]); one run "
                                 "at a time writes a folder")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh: delete the folder's results first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--center", default="median", choices=list(CENTERS), metavar="CENTER",
                   help=center_help)
    p.add_argument("--backend", default="loky", choices=["loky", "threading", "dask"],
                   help="where the tasks run: loky (processes, default), threading, or "
                        "dask (needs gmoe[dask])")
    p.add_argument("--scheduler", default=None,
                   help="with --backend dask: the scheduler address (tcp://host:port); "
                        "default: a local cluster")
    p.set_defaults(func=_cmd_run)

    def folder_options(p, verb: str) -> None:
        """The results folder, --metric and --center of `gmoe rates` and `gmoe plot`."""
        p.add_argument("dir", help="results folder (written by gmoe run)")
        p.add_argument("--metric", action="append",
                       help=f"metric to {verb} (repeatable; default: the losses and the "
                            "config's [theory] metrics)")
        p.add_argument("--center", default="median", choices=list(CENTERS),
                       metavar="CENTER", help=center_help)

    p = sub.add_parser("rates", help="print the rate table of a results folder")
    folder_options(p, "fit")
    p.set_defaults(func=_cmd_rates)

    p = sub.add_parser("plot", help="draw the convergence-rate plots of a results folder")
    folder_options(p, "plot")
    p.add_argument("--dest", default=None, help="folder for the figures (default: DIR)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("repair", help="rewrite a damaged results file, keeping every intact "
                                      "task (the original is backed up)")
    p.add_argument("dir", help="results folder (written by gmoe run)")
    p.set_defaults(func=_cmd_repair)

    p = sub.add_parser("reproduce", help="run every built-in config and redraw the figures")
    p.add_argument("--quick", action="store_true", help="use each config's [quick] profile")
    p.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (default: all)")
    p.add_argument("--out", default="results",
                   help="folder of the results folders, one per config (default: results)")
    p.add_argument("--figures", default=None,
                   help="also archive each config's figures, rate table, config and "
                        "results in this folder's NAME/ (the committed figures/ layout)")
    p.add_argument("--name", action="append", help="only this built-in config (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("fit", help="fit a mixture of experts to a CSV file of numbers")
    p.add_argument("data", help="CSV file, one row per sample; the last column is y unless "
                                "--y says otherwise")
    p.add_argument("--k", type=int, default=2, help="number of experts (default: 2)")
    p.add_argument("--y", default=None, metavar="NAME",
                   help="the response column: its name, or with --no-header its position "
                        "from 0 (default: the last column)")
    p.add_argument("--no-header", action="store_true",
                   help="the file has no header row; columns are numbered from 0")
    p.add_argument("--index-col", default=None, metavar="COL",
                   help="a column of row labels to leave out, by name or position from 0 "
                        "(--index-col 0 for a file written by pandas' to_csv)")
    p.add_argument("--weights", default=None, metavar="COL", help=WEIGHTS_HELP)
    p.add_argument("--gate", default="softmax", metavar="NAME",
                   help=f"the gate: {', '.join(GATES)} (default: softmax)")
    p.add_argument("--K", type=int, default=None,
                   help="topk gate: how many experts each x selects (required with "
                        "--gate topk)")
    p.add_argument("--rank-by", default=None, metavar="RULE",
                   help=f"topk gate: how experts are ranked, {' or '.join(RANK_BY)} "
                        "(default: slope)")
    p.add_argument("--tau", type=float, default=None,
                   help="temperature and activation gates: the temperature, or its start "
                        "value when it is learned (default: 1)")
    p.add_argument("--fixed-tau", action="store_true",
                   help="temperature and activation gates: keep --tau fixed, do not learn it")
    p.add_argument("--activation", default=None, metavar="NAME",
                   help=f"activation gate: {', '.join(ACTIVATIONS)} (default: tanh)")
    p.add_argument("--n-init", type=int, default=5,
                   help="restarts from k-means starts; the best log-likelihood wins "
                        "(default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts (default: 0)")
    p.add_argument("--save", default=None, metavar="FILE",
                   help="write the fit as JSON to this file")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it shows on a terminal only: EM runs and polishes "
                        "done, of how many)")
    p.set_defaults(func=_cmd_fit)

    from .selection.select import METHODS

    p = sub.add_parser("select", help="choose the number of experts of a CSV file's data "
                                      "(dendrogram criterion, AIC, BIC or ICL)")
    p.add_argument("data", help="CSV file, one row per sample; the last column is y unless "
                                "--y says otherwise")
    p.add_argument("--k-max", type=int, default=6,
                   help="the largest number of experts considered (default: 6)")
    p.add_argument("--method", default="bic", choices=METHODS,
                   help="bic (default), aic, icl (a fit for every k), or dendrogram (one "
                        "fit with k-max experts; it needs them to cluster around fewer)")
    p.add_argument("--out", default=None, metavar="PNG",
                   help="the dendrogram picture; its suffix is the format: png, pdf, svg, ... "
                        "(default: DATA_dendrogram.png here)")
    p.add_argument("--y", default=None, metavar="NAME", help="the response column, as for fit")
    p.add_argument("--no-header", action="store_true", help="the file has no header row")
    p.add_argument("--index-col", default=None, metavar="COL",
                   help="a column of row labels to leave out, as for fit")
    p.add_argument("--weights", default=None, metavar="COL", help=WEIGHTS_HELP)
    p.add_argument("--n-init", type=int, default=3,
                   help="k-means restarts of each fit (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts (default: 0)")
    p.set_defaults(func=_cmd_select)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``gmoe`` console script.

    Exit status: 0 on success, 1 when the fit of ``gmoe fit`` (or every fit
    ``gmoe select`` would choose from) fails or the reader of stdout goes away
    (a closed pipe), 2 for bad input (one line on stderr), 130 when interrupted.
    Warnings are printed as one line each (``gmoe: warning: ...``).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(argv)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, in the command's voice."""
    print(f"gmoe: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _main(argv) -> int:
    from .config import ConfigError
    from .records import ResultsFolderError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except CLIError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except (ConfigError, ResultsFolderError, ValueError, FileNotFoundError,
            ImportError) as exc:
        print(f"gmoe: error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"gmoe: error: cannot write {exc.filename}: permission denied", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"gmoe: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmoe: interrupted; finished tasks are saved, run the same command to resume",
              file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """The reader of stdout went away (``gmoe run ... | head``): point stdout at devnull.

    As Python's documentation recommends (signal module, "Note on SIGPIPE"), so that
    the interpreter's last flush at exit does not fail again with a traceback.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (e.g. captured by a test)
        pass


if __name__ == "__main__":
    sys.exit(main())
