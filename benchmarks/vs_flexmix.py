"""gmoe against R's flexmix on identical data (issue 7, "Performance").

Run by hand: ``python benchmarks/vs_flexmix.py [--n 1000 10000 100000] [--reps 1]``.
Needs ``Rscript`` with the flexmix package; without them it prints one line and
exits 0. Not part of the test suite.

Data: the reference-setting truth (docs/theory.md, "The reference setting"; d = 1,
k* = 2, X ~ U[0, 1]) sampled by gmoe, written to a CSV file; the flexmix fits run in
``vs_flexmix.R`` (FLXMRglm gaussian experts ``y ~ x``, FLXPmultinom(~ x) concomitant =
softmax gate, minprior = 0, iter.max = 2000, tolerance = 1e-6); gmoe runs ``fit_em``
with tol = 1e-6, max_iter = 2000. Both fit k = 2 (exact) and k = 3 (over-specified) on
every data set.

Starting points (``--flexmix-init kmeans``, the default): for each (data set, k)
the k-means labels that ``fit_em(init="kmeans", rng=seed)`` draws for its first
restart are computed here with the same seed and passed to flexmix as its initial
posterior, smoothed exactly as gmoe smooths them ((1 - s) onehot + s / k, s =
0.05). So flexmix and gmoe's n_init = 1 fit start from the same responsibilities;
gmoe's n_init = 5 fit adds four more k-means restarts and keeps the best; ``ga``
(``fit_em(init="auto", n_init=5)``, MoERegressor's former default without the
standardisation) adds to those the starts grown from the (k-1)-expert fit; ``gd`` is
``MoERegressor``'s current default (``init="auto", n_init=5``, screened restarts from
k-means on a sample, standardised units). ``--flexmix-init random`` uses flexmix's own
default (random hard assignment) instead.

Times: flexmix, the elapsed time of the ``flexmix()`` call inside R (data already
loaded, after a warm-up fit); gmoe, the wall time of the ``fit_em`` call (after a
warm-up fit). Ratio = flexmix seconds / gmoe seconds.

Log-likelihoods: flexmix's ``logLik`` of a model with a concomitant is the
conditional log-likelihood of y given x. The script converts flexmix's fitted
parameters (per component intercept, slope, sigma = sd; multinomial concomitant
coefficients with component 1 as reference) into a gmoe ``MoEParams`` and evaluates
``GaussianMoE.log_likelihood`` on the same data; R evaluates the same quantity at
the same parameters independently (``loglik_recomputed``). flexmix's own logLik is
computed before its final refit of the concomitant model, so it can differ from the
value at the reported parameters by about the stopping tolerance.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import gmoe
from gmoe import GaussianMoE, MoEParams, MoERegressor, SoftmaxGate, fit_em
from gmoe._design import Design
from gmoe.initialization import kmeans_responsibilities, params_from_responsibilities

#: docs/theory.md, "The reference setting": d = 1, k* = 2, X ~ U[0, 1].
TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])
KS = (2, 3)
TOL, MAX_ITER = 1e-6, 2000
R_SCRIPT = Path(__file__).with_suffix(".R")
#: the smoothing gmoe applies to hard k-means labels before its first M-step
SMOOTH = inspect.signature(params_from_responsibilities).parameters["smooth"].default


def flexmix_available() -> str | None:
    """None if Rscript and flexmix are usable, else the reason they are not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    probe = subprocess.run(["Rscript", "-e",
                            "quit(status = !requireNamespace('flexmix', quietly = TRUE))"],
                           capture_output=True)
    if probe.returncode != 0:
        return "the R package flexmix is not installed"
    return None


def r_versions() -> dict:
    out = subprocess.run(["Rscript", "-e", "cat(R.version$major, R.version$minor, "
                          "as.character(packageVersion('flexmix')), "
                          "as.character(packageVersion('nnet')))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {"R": f"{out[0]}.{out[1]}", "flexmix": out[2], "nnet": out[3]}


def run_flexmix(X, y, labels: dict, init: str, seed: int, workdir: Path) -> dict:
    data, out = workdir / "data.csv", workdir / "out.csv"
    cols = [X[:, 0], y] + [labels[k] + 1 for k in KS]
    header = ",".join(["x", "y"] + [f"c{k}" for k in KS])
    np.savetxt(data, np.column_stack(cols), delimiter=",", header=header, comments="",
               fmt=["%.17g", "%.17g"] + ["%d"] * len(KS))
    subprocess.run(["Rscript", str(R_SCRIPT), str(data), str(out), init, str(seed),
                    repr(SMOOTH)] + [str(k) for k in KS], check=True)
    res: dict = {k: {} for k in KS}
    for line in out.read_text().splitlines()[1:]:
        k, key, value = line.split(",")
        res[int(k)][key.strip('"')] = float(value) if value != "NA" else float("nan")
    return res


def _git_commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=Path(__file__).parent)
    return out.stdout.strip() or None


def flexmix_params(fm: dict) -> MoEParams:
    """flexmix's parameters as gmoe MoEParams (gate normal form is applied by the model)."""
    k = int(fm["k_final"])
    get = [[fm[f"{name}{i}"] for i in range(1, k + 1)] for name in ("g0_", "g1_", "a", "b", "sd")]
    g0, g1, a, b, sd = (np.array(v) for v in get)
    return MoEParams(beta0=g0, beta1=g1[:, None], a=a[:, None], b=b, var=sd**2)


def timed_fit(X, y, k, n_init, seed, init="kmeans"):
    t0 = time.perf_counter()
    fit = fit_em(X, y, k, init=init, n_init=n_init, tol=TOL, max_iter=MAX_ITER, rng=seed,
                 warn=False)
    return fit, time.perf_counter() - t0


def timed_default(X, y, k, seed):
    """MoERegressor's default fit (with tol and max_iter as flexmix's): (result, seconds)."""
    t0 = time.perf_counter()
    reg = MoERegressor(n_experts=k, tol=TOL, max_iter=MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    return reg.result_, time.perf_counter() - t0


def start_from_labels(X, y, labels, k) -> MoEParams:
    """The parameters gmoe's kmeans init builds from ``labels`` (one smoothed M-step)."""
    resp = np.zeros((k, len(y)))
    resp[labels, np.arange(len(y))] = 1.0
    var_floor = 1e-6 * max(float(np.var(y)), 1e-300)  # fit_em's default floor
    return params_from_responsibilities(Design(X, y), resp, SoftmaxGate(), var_floor, SMOOTH)


def benchmark(ns, reps, init, workdir: Path) -> list[dict]:
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    Xw, yw = model.sample(300, rng=12345)
    fit_em(Xw, yw, 2, n_init=1, rng=0, warn=False)  # warm-up
    rows = []
    for n in ns:
        for rep in range(reps):
            data_seed = 7919 * rep + n
            X, y = model.sample(n, rng=data_seed)
            fit_seeds = {k: 100 * data_seed + k for k in KS}
            labels = {k: kmeans_responsibilities(X, y, k, np.random.default_rng(fit_seeds[k]))
                      .argmax(axis=0) for k in KS}
            fm_all = run_flexmix(X, y, labels, init, data_seed, workdir)
            for k in KS:
                fm = fm_all[k]
                g1, s1 = timed_fit(X, y, k, 1, fit_seeds[k])
                # EM alone from the same start (k-means excluded, as it is for flexmix)
                gem, sem = timed_fit(X, y, k, 1, None, start_from_labels(X, y, labels[k], k))
                g5, s5 = timed_fit(X, y, k, 5, fit_seeds[k])
                # MoERegressor's default: k-means restarts plus starts grown from the
                # (k-1)-expert fit, so k experts never end below k - 1
                ga, sa = timed_fit(X, y, k, 5, fit_seeds[k], init="auto")
                gd, sd = timed_default(X, y, k, fit_seeds[k])
                row = {"n": n, "rep": rep, "k": k, "fm_seconds": fm["seconds"],
                       "fm_failed": bool(fm.get("failed", 1))}
                if not row["fm_failed"]:
                    fm_ll_gmoe = GaussianMoE(SoftmaxGate(), flexmix_params(fm)).log_likelihood(X, y)
                    row.update(fm_iter=int(fm["iter"]), fm_converged=bool(fm["converged"]),
                               fm_k_final=int(fm["k_final"]), fm_loglik=fm["loglik"],
                               fm_loglik_R_at_params=fm["loglik_recomputed"],
                               fm_loglik_gmoe_at_params=fm_ll_gmoe)
                row.update(gem_seconds=sem, gem_iter=gem.n_iter, gem_loglik=gem.loglik,
                           g1_seconds=s1, g1_iter=g1.n_iter, g1_loglik=g1.loglik,
                           g1_converged=g1.converged, g1_reason=g1.reason,
                           g5_seconds=s5, g5_iter=g5.n_iter, g5_loglik=g5.loglik,
                           g5_converged=g5.converged, g5_reason=g5.reason,
                           g5_restart_logliks=[float(v) for v in g5.restart_logliks],
                           g5_best_restart=g5.best_restart,
                           ga_seconds=sa, ga_iter=ga.n_iter, ga_loglik=ga.loglik,
                           gd_seconds=sd, gd_iter=gd.n_iter, gd_loglik=gd.loglik)
                rows.append(row)
                print(_row_line(row), flush=True)
    return rows


#: (title, width, format, value) of the table columns; value(r) from a result row.
COLUMNS = [
    ("fm s", 8, ".3f", lambda r: r["fm_seconds"]),
    ("fm it", 5, ".0f", lambda r: r["fm_iter"]),
    ("fm loglik", 13, ".4f", lambda r: r["fm_loglik"]),
    ("em s", 7, ".3f", lambda r: r["gem_seconds"]),
    ("em it", 5, ".0f", lambda r: r["gem_iter"]),
    ("g1 s", 7, ".3f", lambda r: r["g1_seconds"]),
    ("g5 s", 7, ".3f", lambda r: r["g5_seconds"]),
    ("g5 it", 5, ".0f", lambda r: r["g5_iter"]),
    ("g5 loglik", 13, ".4f", lambda r: r["g5_loglik"]),
    ("x em", 6, ".1f", lambda r: r["fm_seconds"] / r["gem_seconds"]),
    ("x g1", 6, ".1f", lambda r: r["fm_seconds"] / r["g1_seconds"]),
    ("x g5", 6, ".1f", lambda r: r["fm_seconds"] / r["g5_seconds"]),
    ("ga s", 7, ".3f", lambda r: r.get("ga_seconds", np.nan)),
    ("x ga", 6, ".1f", lambda r: r["fm_seconds"] / r.get("ga_seconds", np.nan)),
    ("(g1-fm)/n", 9, ".1e", lambda r: (r["g1_loglik"] - r["fm_loglik"]) / r["n"]),
    ("(g5-fm)/n", 9, ".1e", lambda r: (r["g5_loglik"] - r["fm_loglik"]) / r["n"]),
    ("(ga-fm)/n", 9, ".1e", lambda r: (r.get("ga_loglik", np.nan) - r["fm_loglik"]) / r["n"]),
    ("gd s", 7, ".3f", lambda r: r.get("gd_seconds", np.nan)),
    ("x gd", 6, ".1f", lambda r: r["fm_seconds"] / r.get("gd_seconds", np.nan)),
    ("(gd-fm)/n", 9, ".1e", lambda r: (r.get("gd_loglik", np.nan) - r["fm_loglik"]) / r["n"]),
    ("gd-ga", 9, ".1e", lambda r: r.get("gd_loglik", np.nan) - r.get("ga_loglik", np.nan)),
]
LEGEND = ("fm = flexmix; em = gmoe EM alone from the smoothed k-means labels (flexmix's start "
          "under --flexmix-init kmeans), k-means time excluded; g1 = gmoe "
          "fit_em(init='kmeans', n_init=1) incl. k-means; g5 = the same with n_init=5; "
          "ga = gmoe fit_em(init='auto', n_init=5) (MoERegressor's former default, "
          "unstandardised); gd = MoERegressor() (the current default: screened "
          "restarts, k-means on a sample); "
          "s = seconds, it = iterations (g5: of the best restart); x = flexmix time / gmoe "
          "time")


def _header(first: str) -> str:
    return first + " ".join(f"{t:>{w}}" for t, w, _, _ in COLUMNS)


def _cells(value) -> str:
    return " ".join(f"{value(get):>{w}{f}}" for _, w, f, get in COLUMNS)


HEADER = _header(f"{'n':>7} {'rep':>3} {'k':>1} ")


def _row_line(r: dict) -> str:
    first = f"{r['n']:>7} {r['rep']:>3} {r['k']:>1} "
    if r["fm_failed"]:
        return first + f"flexmix failed after {r['fm_seconds']:.3f} s"
    return first + _cells(lambda get: get(r))


def summarize(rows: list[dict]) -> tuple[str, bool]:
    """Median table per (n, k), the cross-check and the issue's checks; (text, all passed)."""
    ok_rows = [r for r in rows if not r["fm_failed"]]
    out = ["", "Medians over replications per (n, k):", _header(f"{'n':>7} {'k':>1} {'reps':>4} ")]
    for n in sorted({r["n"] for r in ok_rows}):
        for k in KS:
            sel = [r for r in ok_rows if r["n"] == n and r["k"] == k]
            if sel:
                out.append(f"{n:>7} {k:>1} {len(sel):>4} "
                           + _cells(lambda get, sel=sel: float(np.median([get(r) for r in sel]))))
    out.append(LEGEND)
    same = max(abs(r["gem_loglik"] - r["g1_loglik"]) for r in rows)
    out.append(f"max |loglik(em) - loglik(g1)| = {same:.2e} (0: the same start, the same path)")
    # cross-check of the likelihoods at flexmix's parameters
    rel_gR = max(abs(r["fm_loglik_gmoe_at_params"] - r["fm_loglik_R_at_params"])
                 / abs(r["fm_loglik_R_at_params"]) for r in ok_rows)
    rel_fm = max(abs(r["fm_loglik_gmoe_at_params"] - r["fm_loglik"]) / abs(r["fm_loglik"])
                 for r in ok_rows)
    out += ["", "Cross-check at flexmix's fitted parameters (max over fits):",
            f"  |gmoe loglik - R recomputed loglik| / |loglik| = {rel_gR:.2e}",
            f"  |gmoe loglik - flexmix logLik()|    / |loglik| = {rel_fm:.2e}"]
    checks = {"cross-check gmoe vs R at flexmix parameters <= 1e-9 relative": rel_gR <= 1e-9,
              "cross-check gmoe vs flexmix logLik <= ~1e-6 relative": rel_fm <= 2e-6}
    big = [r for r in ok_rows if r["n"] == max(r2["n"] for r2 in ok_rows)]
    nbig = big[0]["n"] if big else 0
    for k in KS:
        sel = [r for r in big if r["k"] == k]
        if sel:
            checks[f"n = {nbig}, k = {k}: gmoe EM alone >= 20x faster (every rep)"] = all(
                r["fm_seconds"] / r["gem_seconds"] >= 20 for r in sel)
            checks[f"n = {nbig}, k = {k}: gmoe n_init=1 >= 20x faster (every rep)"] = all(
                r["fm_seconds"] / r["g1_seconds"] >= 20 for r in sel)
            checks[f"n = {nbig}, k = {k}: gmoe n_init=5 >= 20x faster (every rep)"] = all(
                r["fm_seconds"] / r["g5_seconds"] >= 20 for r in sel)
            checks[f"n = {nbig}, k = {k}: gmoe(n_init=5) loglik >= flexmix - 1e-6 n"] = all(
                r["g5_loglik"] >= r["fm_loglik"] - 1e-6 * r["n"] for r in sel)
            if all("ga_seconds" in r for r in sel):
                checks[f"n = {nbig}, k = {k}: gmoe auto >= 20x faster (every rep)"] = all(
                    r["fm_seconds"] / r["ga_seconds"] >= 20 for r in sel)
                checks[f"n = {nbig}, k = {k}: gmoe auto loglik >= flexmix - 1e-6 n"] = all(
                    r["ga_loglik"] >= r["fm_loglik"] - 1e-6 * r["n"] for r in sel)
            if all("gd_seconds" in r for r in sel):
                checks[f"n = {nbig}, k = {k}: gmoe default >= 20x faster (every rep)"] = all(
                    r["fm_seconds"] / r["gd_seconds"] >= 20 for r in sel)
                checks[f"n = {nbig}, k = {k}: gmoe default loglik >= flexmix - 1e-6 n"] = all(
                    r["gd_loglik"] >= r["fm_loglik"] - 1e-6 * r["n"] for r in sel)
    out += ["", "Over-specified (k = 3) fit below the exact (k = 2) fit on the same data:"]
    fm_below = g1_below = g5_below = ga_below = gd_below = total = 0
    for n in sorted({r["n"] for r in rows}):
        for rep in sorted({r["rep"] for r in rows if r["n"] == n}):
            pair = {r["k"]: r for r in rows if r["n"] == n and r["rep"] == rep}
            if 2 not in pair or 3 not in pair:
                continue
            total += 1
            p2, p3 = pair[2], pair[3]
            if not (p2["fm_failed"] or p3["fm_failed"]) and p3["fm_loglik"] < p2["fm_loglik"]:
                fm_below += 1
                out.append(f"  flexmix n = {n} rep {rep}: k=3 {p3['fm_loglik']:.4f} < "
                           f"k=2 {p2['fm_loglik']:.4f}")
            if p3["g1_loglik"] < p2["g1_loglik"]:
                g1_below += 1
                out.append(f"  gmoe n_init=1 n = {n} rep {rep}: k=3 {p3['g1_loglik']:.4f} < "
                           f"k=2 {p2['g1_loglik']:.4f}")
            if p3["g5_loglik"] < p2["g5_loglik"]:
                g5_below += 1
                out.append(f"  gmoe n_init=5 n = {n} rep {rep}: k=3 {p3['g5_loglik']:.4f} < "
                           f"k=2 {p2['g5_loglik']:.4f}")
            if "ga_loglik" in p3 and p3["ga_loglik"] < p2["ga_loglik"]:
                ga_below += 1
                out.append(f"  gmoe auto n = {n} rep {rep}: k=3 {p3['ga_loglik']:.4f} < "
                           f"k=2 {p2['ga_loglik']:.4f}")
            if "gd_loglik" in p3 and p3["gd_loglik"] < p2["gd_loglik"]:
                gd_below += 1
                out.append(f"  gmoe default n = {n} rep {rep}: k=3 {p3['gd_loglik']:.4f} < "
                           f"k=2 {p2['gd_loglik']:.4f}")
    out.append(f"  flexmix: {fm_below}/{total} data sets; gmoe n_init=1: {g1_below}/{total}; "
               f"gmoe n_init=5: {g5_below}/{total}; gmoe auto: {ga_below}/{total}; "
               f"gmoe default: {gd_below}/{total}")
    checks["gmoe auto (init='auto', n_init=5): k=3 never below k=2"] = ga_below == 0
    out += ["", "Checks:"] + [f"  [{'PASS' if v else 'FAIL'}] {name}" for name, v in checks.items()]
    return "\n".join(out), all(checks.values())


def plot(rows: list[dict], path: Path) -> None:
    """Left: seconds per fit against n; right: seconds per EM iteration (log-log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.8))
    styles = {"fm": ("flexmix", "o", "-"), "gem": ("gmoe EM alone", "D", ":"),
              "g1": ("gmoe, n_init=1", "s", "--"), "g5": ("gmoe, n_init=5", "^", "-"),
              "ga": ("gmoe auto, full restarts", "v", "-."),
              "gd": ("gmoe default (MoERegressor)", "P", ":")}
    colors = {2: "tab:blue", 3: "tab:red"}
    ok = [r for r in rows if not r["fm_failed"]]

    def draw(axis, who, k, value, label, marker, ls):
        sel = [r for r in ok if r["k"] == k]
        ns = sorted({r["n"] for r in sel})
        vals = [[value(r) for r in sel if r["n"] == n] for n in ns]
        med = np.array([np.median(v) for v in vals])
        err = [med - np.array([np.min(v) for v in vals]),
               np.array([np.max(v) for v in vals]) - med]
        axis.errorbar(ns, med, yerr=err, marker=marker, ls=ls, color=colors[k], capsize=3,
                      label=f"{label}, k = {k}", mfc=colors[k] if who == "fm" else "white")

    for k in KS:
        for who, (label, marker, ls) in styles.items():
            if all(f"{who}_seconds" in r for r in ok):
                draw(ax, who, k, lambda r, who=who: r[f"{who}_seconds"], label, marker, ls)
        for who in ("fm", "gem"):
            label, marker, ls = styles[who]
            draw(ax2, who, k, lambda r, who=who: r[f"{who}_seconds"] / max(r[f"{who}_iter"], 1),
                 label, marker, ls)
    ax.set_title("Time per fit (tol 1e-6, max_iter 2000)")
    ax.set_ylabel("seconds per fit")
    ax2.set_title("Time per EM iteration (same start)")
    ax2.set_ylabel("seconds per iteration")
    for axis in (ax, ax2):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("n (sample size)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    fig.suptitle("gmoe vs flexmix, reference-setting data (median over data sets, "
                 "min-max bars)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000, 100_000],
                        help="sample sizes (default 1e3 1e4 1e5)")
    parser.add_argument("--reps", type=int, default=1, help="data sets per n (default 1)")
    parser.add_argument("--flexmix-init", choices=("kmeans", "random"), default="kmeans")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--from-json", type=Path, help="summarize/plot saved results, no fits")
    parser.add_argument("--plot", type=Path, help="write the time-vs-n plot (PNG) here")
    args = parser.parse_args()

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        rows = saved["rows"]
        print(json.dumps(saved["meta"]))
    else:
        reason = flexmix_available()
        if reason:
            print(f"vs_flexmix: skipped ({reason}).")
            return 0
        meta = {"python": sys.version.split()[0], "numpy": np.__version__,
                "gmoe": gmoe.__version__, "gmoe_commit": _git_commit(), **r_versions(),
                "flexmix_init": args.flexmix_init, "reps": args.reps,
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                "nproc": os.cpu_count(), "loadavg_start": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d %H:%M")}
        print(json.dumps(meta))
        print(HEADER, flush=True)
        with tempfile.TemporaryDirectory(prefix="vs_flexmix_") as tmp:
            rows = benchmark(args.n, args.reps, args.flexmix_init, Path(tmp))
        meta["loadavg_end"] = os.getloadavg()
        print(json.dumps(meta))
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    text, passed = summarize(rows)
    print(text)
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
