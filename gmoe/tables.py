"""Rate tables: one row per (sub-sweep, metric) of a sweep folder, built, printed
and written here (``rates.csv``, ``rates.txt``) for ``gmoe run``, ``gmoe rates``,
``gmoe reproduce`` and the plots."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .rates import check_center, fit_rate

__all__ = ["rate_table", "format_rates", "write_rates", "metric_values", "RATES_CSV",
           "RATES_TXT"]

#: The rate table of a results folder, as CSV and as the text ``gmoe rates`` prints.
RATES_CSV = "rates.csv"
RATES_TXT = "rates.txt"


def load_sweep(results):
    """``(results, meta)`` of a sweep folder (or of a DataFrame, with ``meta = {}``).

    When the folder has its ``sweep.json``, only the records of its configs are
    kept: lines whose ``config_hash`` is none of the configs' hashes (results of
    another config appended to the folder) are left out with a :class:`UserWarning`
    saying how many, since ``gmoe run`` would refuse such a folder. The rates and
    plots then rest on the sweep's own records only; a folder in which no record
    belongs to its configs is a :class:`ValueError`.
    """
    from .records import SWEEP_FILE, load_results

    if not isinstance(results, (str, Path)):
        return results, {}
    folder = Path(results)
    meta_path = folder / SWEEP_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    df = load_results(folder)
    hashes = {c.get("hash") for c in meta.get("configs", [])} - {None}
    if hashes and "config_hash" in df.columns:
        own = df["config_hash"].isin(hashes).to_numpy()
        if not own.any():
            raise ValueError(f"none of the {len(df)} records in {folder} belongs to the "
                             f"configs of its {SWEEP_FILE}; `gmoe run` would refuse the folder")
        if not own.all():
            warnings.warn(f"{int((~own).sum())} of the {len(df)} records in {folder} belong "
                          f"to another config (their config_hash is not in {SWEEP_FILE}) and "
                          "were left out; `gmoe run` would refuse this folder (use another "
                          "output folder, or --no-resume to start afresh)", UserWarning,
                          stacklevel=3)
            df = df[own].reset_index(drop=True)
    return df, meta


def check_metrics(df, metrics) -> list[str]:
    """``metrics`` as a list; a ValueError listing the metrics the results hold if
    one of them is not a column of ``df``."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        raise ValueError(f"no metric {missing[0]!r} in the results; available: "
                         + ", ".join(available_metrics(df)))
    return metrics


def available_metrics(df) -> list[str]:
    """The numeric columns of the results that are not task coordinates."""
    coords = {"sub", "n", "n_index", "rep", "seed"}
    return [c for c in df.columns if c not in coords and df[c].dtype.kind in "fiu"]


def theories(meta: dict) -> dict:
    """The theoretical slopes of a sweep's sub-sweeps, merged (the first one's win)."""
    out: dict = {}
    for cfg in reversed(meta.get("configs", [])):
        out.update(cfg.get("theory", {}))
    return out


def sub_theories(meta: dict) -> dict:
    """Sub-sweep index -> its own theoretical slopes (a ``[compare]`` sub-sweep fitting
    another family to the shared truth has none)."""
    return {i: dict(cfg.get("theory", {})) for i, cfg in enumerate(meta.get("configs", []))}


def _share(df, column: str, test) -> float:
    """Share of the rows whose ``column`` passes ``test`` (NaN if the column is absent)."""
    if column not in df.columns or len(df) == 0:
        return np.nan
    return float(np.mean(test(df[column]).to_numpy(dtype=bool)))


def failed_share(df) -> float:
    """Share of the fits that did not succeed."""
    return _share(df, "status", lambda s: s != "ok")


#: The column flagging a loss at the translation infimum's cap, by metric (the
#: configured loss, and the infimum convention's loss recorded beside it).
CAP_FLAGS = {"loss": "loss_saturated", "loss_infimum": "loss_infimum_saturated"}


def capped_share(df, metric: str = "loss") -> float:
    """Share of ``metric``'s values at the translation infimum's cap (NaN if the
    metric has no cap or it was not recorded)."""
    return _share(df, CAP_FLAGS.get(metric, ""), lambda s: s == True)  # noqa: E712


def uncertified_share(df) -> float:
    """Share of the polished fits that are not certified maxima (NaN if not polished)."""
    return _share(df, "certified", lambda s: s != True)  # noqa: E712


def degenerate_share(df) -> float:
    """Share of the fits with a variance at the floor."""
    return _share(df, "degenerate", lambda s: s == True)  # noqa: E712


def verdict_range(meta: dict) -> tuple[float, float]:
    """The n-range the config declared for its verdicts (whole grid if none)."""
    configs = meta.get("configs", [])
    verdict = configs[0].get("verdict", {}) if configs else {}
    return float(verdict.get("n_min", 0)), float(verdict.get("n_max", np.inf))


def metric_values(part, metric: str, certified_only: bool = True) -> np.ndarray:
    """A metric's values, NaN for fits that are not certified maxima.

    Rates are rates of the maximum-likelihood estimate (docs/theory.md, "Certified
    fits and inference"): with ``certified_only`` a fit the polish could not
    certify (or a degenerate one) does not enter the rate. Results without the
    ``certified`` column (unpolished sweeps) are used as they are; a sub-sweep in
    which no fit is certified (top-K gates, whose maxima sit on selection
    boundaries) uses its polished fits that did not fail.
    """
    import pandas as pd

    values = pd.to_numeric(part[metric], errors="coerce").to_numpy(dtype=float)
    if certified_only and "certified" in part.columns and part["certified"].notna().any():
        certified = part["certified"].to_numpy() == True  # noqa: E712
        if not certified.any():
            # no fit could be certified (top-K maxima sit on selection boundaries):
            # the polished fits that did not fail
            certified = part["status"].to_numpy() == "ok"
        values = np.where(certified, values, np.nan)
    return values


def rate_table(results, metrics=None, center: str = "median", theory: dict | None = None,
               tolerance: float = 0.05, certified_only: bool = True):
    """One row per (sub-sweep, metric): slope, 95% CI, constant, R^2, theory, agreement.

    ``in_ci`` says whether the confidence interval contains the theoretical slope;
    ``agrees`` also accepts a slope within ``tolerance`` of it, since the theoretical
    rates hold up to log factors, which shift an empirical slope slightly while a
    long n-grid makes its interval very narrow. ``inconclusive`` flags an interval
    that holds the theory and also 0 (no decrease at all): ``agrees`` (and
    ``in_ci``) is then True but decides nothing, and :func:`format_rates` prints
    "wide" instead of "yes".

    Parameters
    ----------
    results : DataFrame or path of a sweep folder
        A folder's records of other configs are left out (see :func:`load_sweep`).
    metrics : list of str, optional
        Default: ``loss``, ``hellinger`` and every metric with a theoretical slope.
        A name that is not a column of the results is a ValueError.
    center : {"median", "mean_log", "mean", "q90"}
    theory : dict, optional
        Theoretical slopes by metric, for every sub-sweep (default: each sub-sweep's
        own ``[theory]``).
    tolerance : float, default=0.05
    certified_only : bool, default=True
        Fit the rates on certified fits only (see :func:`metric_values`).

    Returns
    -------
    DataFrame
        Columns ``sub, label, metric, theory, slope, ci_low, ci_high, constant, r2,
        n_points, note, in_ci, agrees, inconclusive``, plus ``n_min``/``n_max`` (the n-range the
        config declared for its verdicts, ``verdict.n_min``/``n_max``; the whole grid
        if none), ``uncertified`` (the share of fits that are not certified maxima,
        and ``uncertified_max_n`` its largest value at one n), ``degenerate`` (a
        variance at the floor), ``failed`` (the share of the sub-sweep's
        fits that did not succeed, e.g. a degenerate variance) and ``capped`` (for a
        loss with a cap, ``loss`` and ``loss_infimum``: the share of the values the
        slope rests on that sit at the translation infimum's cap, see
        :func:`gmoe.losses.voronoi_loss`).

    Raises
    ------
    ValueError
        An unknown ``center`` or metric.
    """
    import pandas as pd

    check_center(center)
    df, meta = load_sweep(results)
    per_sub = sub_theories(meta) if theory is None else {}
    theory = theories(meta) if theory is None else theory
    if metrics is None:
        metrics = [m for m in dict.fromkeys(["loss", "loss_mass", "hellinger", *theory])
                   if m in df.columns]
    else:
        metrics = check_metrics(df, metrics)
    rows = []
    n_min, n_max = verdict_range(meta)
    for (sub, label), part in df.groupby(["sub", "label"], sort=True, dropna=False):
        by_n = part.groupby("n")
        for metric in metrics:
            if metric not in part.columns:
                continue
            values = metric_values(part, metric, certified_only)
            n = part["n"].to_numpy(dtype=float)
            inside = (n >= n_min) & (n <= n_max)
            # the sizes the slope really rests on: inside the range, with a value
            used = inside & np.isfinite(values) & (values > 0)
            uncertified = by_n.apply(uncertified_share)
            row = {"sub": sub, "label": label if isinstance(label, str) else "",
                   "metric": metric,
                   "theory": per_sub.get(sub, theory).get(metric, np.nan),
                   "failed": failed_share(part),
                   "uncertified": uncertified_share(part),
                   "uncertified_max_n": float(uncertified.max()) if len(uncertified) else np.nan,
                   "degenerate": degenerate_share(part),
                   # of the values the slope rests on: a median at the cap is the
                   # cap, not a rate
                   "capped": capped_share(part[used], metric),
                   "n_min": float(n[used].min()) if used.any() else np.nan,
                   "n_max": float(n[used].max()) if used.any() else np.nan}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    fit = fit_rate(n[inside], values[inside], center=center)
            except ValueError as exc:
                row.update(slope=np.nan, ci_low=np.nan, ci_high=np.nan, constant=np.nan,
                           r2=np.nan, n_points=0, note=str(exc))
            else:
                row.update(slope=fit.slope, ci_low=fit.ci_low, ci_high=fit.ci_high,
                           constant=fit.constant, r2=fit.r2, n_points=fit.n_points,
                           note=f"{fit.n_excluded} n excluded" if fit.n_excluded else "")
            t = row["theory"]
            if np.isfinite(t) and np.isfinite(row["slope"]):
                row["in_ci"] = bool(row["ci_low"] <= t <= row["ci_high"])
                row["agrees"] = row["in_ci"] or abs(row["slope"] - t) <= tolerance
                # an interval that holds the theory and also 0 (no decrease) decides
                # nothing: the slope agrees with the theory and with no rate at all
                row["inconclusive"] = bool(row["in_ci"] and t != 0
                                           and row["ci_low"] <= 0 <= row["ci_high"])
            else:
                row["in_ci"] = row["agrees"] = row["inconclusive"] = None
            rows.append(row)
    return pd.DataFrame(rows)


def format_rates(table) -> str:
    """The rate table as text, one line per (sub-sweep, metric), with a legend.

    A ``config`` column (the table of ``gmoe reproduce``, many configs) is shown
    first; labels are never cut, the column is as wide as the longest one.
    """
    rows = list(table.itertuples())
    configs = "config" in getattr(table, "columns", ())
    label_w = max([len("sweep"), *(len(r.label or "-") for r in rows)])
    config_w = max([len("config"), *(len(str(r.config)) for r in rows)]) if configs else 0
    head = f"{'config':{config_w}s} " if configs else ""
    lines = [f"{head}{'sweep':{label_w}s} {'metric':14s} {'slope':>8s} {'95% CI':>20s} "
             f"{'constant':>10s} {'theory':>7s}  agrees  failed  capped  uncert  degen   "
             "n-range"]
    for row in rows:
        ci = f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
        theory = "" if row.theory != row.theory else f"{row.theory:g}"
        agrees = {True: "yes", False: "NO", None: ""}.get(row.agrees, "")
        if row.inconclusive:
            agrees = "wide"
        label = row.label or "-"
        capped = "" if row.capped != row.capped else f"{row.capped:.2f}"
        uncert = "" if row.uncertified != row.uncertified else f"{row.uncertified:.2f}"
        degen = "" if row.degenerate != row.degenerate else f"{row.degenerate:.2f}"
        n_range = ("" if row.n_min != row.n_min
                   else f"{row.n_min:.0f}-{row.n_max:.0f}")
        head = f"{str(row.config):{config_w}s} " if configs else ""
        lines.append(f"{head}{label:{label_w}s} {row.metric:14s} {row.slope:8.3f} {ci:>20s} "
                     f"{row.constant:10.4g} {theory:>7s}  {agrees:6s}  {row.failed:6.2f}  "
                     f"{capped:>6s}  {uncert:>6s}  {degen:>5s}  {n_range:>8s}"
                     f"{'  (' + row.note + ')' if row.note else ''}".rstrip())
    lines.append("rates of certified fits (docs/theory.md, 'Certified fits and inference'); "
                 "uncert = share not certified, degen = share with a variance at the floor; "
                 "fitted on the n-range shown (the sizes in the declared range that have "
                 "values; '(k n excluded)': sizes in it without); wide = the interval "
                 "holds the theory and 0 (inconclusive); capped = share of the values "
                 "the slope rests on at the infimum convention's cap (a median there is "
                 "the cap, not a rate)")
    return "\n".join(lines)


def write_rates(out_dir, table) -> str:
    """Write ``table`` (from :func:`rate_table`) to ``out_dir`` as ``rates.csv`` and
    ``rates.txt``; returns the text. The text of one folder leaves out a ``config``
    column (the CSV keeps it): it is what ``gmoe rates`` prints for the folder."""
    out_dir = Path(out_dir)
    table.to_csv(out_dir / RATES_CSV, index=False)
    text = format_rates(table.drop(columns="config", errors="ignore"))
    (out_dir / RATES_TXT).write_text(text + "\n")
    return text
