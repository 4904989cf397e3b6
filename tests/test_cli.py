import subprocess
import sys

import pytest

from gmoe.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gmoe.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_list_shows_builtin_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "softmax-exact" in out and "softmax-over" in out


@pytest.mark.parametrize("body,key", [
    ('name = "x"\nseed = 1\nreps = -2\n', "reps"),
    ('name = "x"\nseed = 1\nreps = 2\ncolour = "red"\n', "colour"),
    ('name = "x"\nseed = "one"\nreps = 2\n', "seed"),
])
def test_malformed_config_exits_2_with_one_line_naming_the_key(tmp_path, body, key):
    path = tmp_path / "bad.toml"
    path.write_text(body + '[truth]\nbeta0 = [0.0, 0.0]\nbeta1 = [[1.0], [0.0]]\n'
                    'a = [[1.0], [2.0]]\nb = [0.0, 1.0]\nvar = [1.0, 1.0]\n'
                    '[fit]\nn_experts = 2\n[n_grid]\nvalues = [100, 200, 300]\n')
    proc = run_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [
    ["run", "no-such-config"],
    ["run", "missing.toml"],
    ["run", "softmax-exact", "--n-jobs", "two"],
    ["frobnicate"],
    ["rates", "/nonexistent/folder"],
])
def test_bad_invocations_exit_2_with_one_line(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_quick_run_writes_results_rates_and_png(tmp_path):
    out = tmp_path / "q"
    proc = run_cli("run", "softmax-exact", "--quick", "--out", str(out), "--no-progress",
                   "--n-jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.jsonl").exists() and (out / "rates.csv").exists()
    png = out / "softmax-exact_loss.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "plot:" in proc.stdout
    # the quick profile shows the exact-specified rate: D1 slope near -1/2
    import pandas as pd

    rates = pd.read_csv(out / "rates.csv").set_index("metric")
    assert -0.75 <= rates.loc["loss", "slope"] <= -0.25
    # rates and plot work again on the folder
    assert run_cli("rates", str(out)).returncode == 0
    picked = run_cli("rates", str(out), "--metric", "b_atom0")
    assert picked.returncode == 0 and "b_atom0" in picked.stdout
    assert "hellinger" not in picked.stdout
    unknown = run_cli("rates", str(out), "--metric", "nonsense")
    assert unknown.returncode == 2 and "nonsense" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert run_cli("plot", str(out), "--metric", "hellinger").returncode == 0


def test_fit_command_on_csv(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 500)
    y = np.where(x > 0, 3 * x, -1 - 2 * x) + 0.1 * rng.standard_normal(500)
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="x,y", comments="")
    proc = run_cli("fit", str(path), "--k", "2", "--save", str(tmp_path / "fit.json"))
    assert proc.returncode == 0, proc.stderr
    assert "log-likelihood" in proc.stdout and (tmp_path / "fit.json").exists()
    bad = run_cli("fit", str(path), "--y", "z")
    assert bad.returncode == 2 and "no column 'z'" in bad.stderr


def test_reproduce_runs_named_builtin_and_copies_figures(tmp_path):
    proc = run_cli("reproduce", "--quick", "--name", "softmax-exact", "--out",
                   str(tmp_path / "res"), "--figures", str(tmp_path / "fig"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    # the committed figures/NAME layout, which gmoe rates and gmoe plot read back
    # (NAME-quick: a quick run never lands on a full run's archive)
    archived = tmp_path / "fig" / "softmax-exact-quick"
    for name in ("softmax-exact_loss.png", "rates.txt", "rates.csv", "sweep.json",
                 "results.jsonl.gz"):
        assert (archived / name).exists(), name
    assert "hellinger" in proc.stdout
    rates = run_cli("rates", str(archived))
    assert rates.returncode == 0, rates.stderr
    assert rates.stdout.strip() == (archived / "rates.txt").read_text().strip()
    import json

    meta = json.loads((tmp_path / "res" / "softmax-exact-quick" / "sweep.json").read_text())
    assert meta["quick"] is True


def test_dask_backend_without_dask_exits_2_naming_the_extra(monkeypatch, capsys):
    for name in ("dask", "distributed", "dask.distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    assert main(["run", "softmax-exact", "--quick", "--backend", "dask"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gmoe[dask]" in err[0]


def test_quick_run_records_its_profile_in_sweep_json(tmp_path):
    import json

    # a small config with a [quick] profile of its own, run through the command line
    body = tmp_path / "c.toml"
    body.write_text('name = "q"\nseed = 3\nreps = 5\n'
                    '[truth]\nbeta0 = [-8.0, 0.0]\nbeta1 = [[25.0], [0.0]]\n'
                    'a = [[-20.0], [20.0]]\nb = [15.0, -5.0]\nsd = [0.3, 0.4]\n'
                    '[x]\nname = "uniform"\nlow = 0.0\nhigh = 1.0\n'
                    '[fit]\nn_experts = 2\n[n_grid]\nvalues = [100, 200, 400, 800]\n'
                    '[hellinger]\nn_x = 50\n'
                    '[quick]\nreps = 1\nn_grid = { values = [100, 200] }\n')
    out = tmp_path / "out"
    assert main(["run", str(body), "--quick", "--out", str(out), "--no-progress",
                 "--n-jobs", "1"]) == 0
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["quick"] is True and meta["configs"][0]["reps"] == 1


# -- gmoe fit: reading CSV files ---------------------------------------------------------

def two_regimes(n=300, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    return x, np.where(x > 0, 3 * x, -1 - 2 * x) + 0.1 * rng.standard_normal(n)


def fit_cli(capsys, *args):
    code = main(["fit", *map(str, args), "--n-init", "1"])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("body,expected", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("x,y\n", "no data rows"),
    ("x,y\n1,2\n3,abc\n5,6\n", "line 3, column 'y': 'abc' is not a number"),
    ('x,y\n1,2\n"3","hello"\n5,6\n', "line 3, column 'y': 'hello' is not a number"),
    ("x,y\n1,2\n3,\n5,6\n", "line 3, column 'y': the cell is empty"),
    ("x,y\n1,2\n3,4\nnan,6\n", "line 4, column 'x': 'nan' is not a finite number"),
    ("x,y\n1,2\n3,inf\n-inf,6\n", "line 3, column 'y': 'inf' is not a finite number "
                                  "(and 1 more such cell)"),
    ("x,y\n1,2\n\n5,6\n", "line 3 is blank"),
    ("x,y\n1,2\n3,4,5\n", "line 3 has 3 fields, the header has 2"),
    # a row of the wrong length is blamed, not the next one or a cell pandas padded
    ("x1,x2,y\n1,2,3,9\n4,5,1\n7,8,9\n", "line 2 has 4 fields, the header has 3"),
    ("x1,x2,y\n1,2,3\n4,5\n7,8,9\n", "line 3 has 2 fields, the header has 3"),
    ("x,y\n1,2,\n3,4,\n", "line 2 has 3 fields, the header has 2 (a trailing comma?)"),
    # one value more on every row: not the first column taken as row labels
    ("x1,x2,y\n1,2,3,5\n4,5,1,6\n7,8,9,7\n", "line 2 has 4 fields, the header has 3"),
    ('x,y\n1,"2\n3"\n4,5,6\n', "line 4 has 3 fields"),  # a quoted field spans lines
    ("y\n1\n2\n", "at least one feature column"),
])
def test_fit_reports_a_bad_csv_in_one_line_naming_row_and_column(tmp_path, capsys, body,
                                                                 expected):
    path = tmp_path / "data.csv"
    path.write_text(body)
    code, _, err = fit_cli(capsys, path)
    assert code == 2
    assert expected in one_line(err)


def test_fit_without_header_counts_the_fields_of_the_first_row(tmp_path, capsys):
    path = tmp_path / "nohead.csv"
    path.write_text("1,2,3\n4,5,6\n7,8\n")
    code, _, err = fit_cli(capsys, path, "--no-header")
    assert code == 2 and "line 3 has 2 fields, line 1 has 3" in one_line(err)


def test_fit_y_takes_a_position_only_without_header(tmp_path, capsys):
    # with a header, --y 1 is a name: no column '1', not the column at position 1
    x, y = two_regimes()
    path = tmp_path / "data.csv"
    rows = "".join(f"{a},{-a},{b}\n" for a, b in zip(x, y, strict=True))
    path.write_text("x1,x2,y\n" + rows)
    code, out, err = fit_cli(capsys, path, "--y", "1")
    assert code == 2 and not out
    line = one_line(err)
    assert "no column '1'" in line and "--y takes a position only with --no-header" in line
    # --index-col and --weights take positions as their help says (the unnamed index
    # column of pandas' to_csv has no name to give)
    code, out, err = fit_cli(capsys, path, "--index-col", "1")
    assert code == 0 and "features: x1; response: y" in out, err


def test_fit_reads_quoted_numbers_and_tolerates_trailing_blank_lines(tmp_path, capsys):
    x, y = two_regimes()
    rows = "".join(f'"{a}",{b}\n' for a, b in zip(x, y, strict=True))
    path = tmp_path / "data.csv"
    path.write_text('"x","y"\n' + rows + "\n\n")
    code, out, err = fit_cli(capsys, path)
    assert code == 0, err
    assert "features: x; response: y" in out and "n = 300" in out


def test_fit_of_a_pandas_to_csv_file_needs_index_col_and_says_so(tmp_path, capsys):
    import pandas as pd

    x, y = two_regimes()
    path = tmp_path / "frame.csv"
    pd.DataFrame({"x": x, "z": -x, "y": y}).to_csv(path)
    code, _, err = fit_cli(capsys, path)
    assert code == 2 and "--index-col 0" in one_line(err)
    code, out, err = fit_cli(capsys, path, "--index-col", "0", "--y", "y")
    assert code == 0, err
    assert "features: x, z; response: y" in out and "n = 300" in out


def test_fit_keeps_the_first_row_of_a_file_without_header(tmp_path, capsys):
    import numpy as np

    x, y = two_regimes()
    path = tmp_path / "nohead.csv"
    np.savetxt(path, np.column_stack([y, x]), delimiter=",")
    code, _, err = fit_cli(capsys, path)
    assert code == 2 and "--no-header" in one_line(err)
    code, out, err = fit_cli(capsys, path, "--no-header", "--y", "0")
    assert code == 0, err
    assert "features: column 1; response: column 0" in out and "n = 300" in out


def test_fit_y_names_the_response_column_anywhere(tmp_path, capsys):
    import numpy as np

    x, y = two_regimes()
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([y, x]), delimiter=",", header="resp,x1", comments="")
    code, out, err = fit_cli(capsys, path, "--y", "resp")
    assert code == 0, err
    assert "features: x1; response: resp" in out
    code, _, err = fit_cli(capsys, path, "--y", "nope")
    assert code == 2 and "no column 'nope'" in one_line(err)


def test_fit_weights_column_is_the_fit_of_repeated_rows(tmp_path, capsys):
    # --weights w with integer weights fits the same likelihood as the rows repeated:
    # the same n (their sum), and the certified log-likelihood of the same maximum
    import re

    import numpy as np

    x, y = two_regimes()
    w = np.random.default_rng(3).integers(1, 4, len(y))
    weighted = tmp_path / "weighted.csv"
    np.savetxt(weighted, np.column_stack([x, w, y]), delimiter=",", header="x,w,y",
               comments="")
    repeated = tmp_path / "repeated.csv"
    np.savetxt(repeated, np.column_stack([np.repeat(x, w), np.repeat(y, w)]),
               delimiter=",", header="x,y", comments="")
    code, out_w, err = fit_cli(capsys, weighted, "--weights", "w")
    assert code == 0, err
    assert "features: x; response: y" in out_w
    assert f"n = {w.sum()} (sum of the weights of {len(y)} rows)" in out_w
    code, out_r, err = fit_cli(capsys, repeated)
    assert code == 0, err

    def loglik(out):
        return float(re.search(r"log-likelihood = (-?[\d.]+)", out).group(1))

    assert loglik(out_w) == pytest.approx(loglik(out_r), abs=2e-3)
    for args, message in ((("--weights", "y"), "--weights and the response are the same"),
                          (("--weights", "nope"), "no column 'nope'")):
        code, _, err = fit_cli(capsys, weighted, *args)
        assert code == 2 and message in one_line(err)
    negative = tmp_path / "negative.csv"
    np.savetxt(negative, np.column_stack([x, -w, y]), delimiter=",", header="x,w,y",
               comments="")
    code, _, err = fit_cli(capsys, negative, "--weights", "w")
    assert code == 2 and "must be >= 0" in one_line(err) and "line 2" in one_line(err)


@pytest.fixture
def data_csv(tmp_path):
    import numpy as np

    x, y = two_regimes()
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="x,y", comments="")
    return path


def test_fit_passes_gate_options(data_csv, capsys):
    code, out, err = fit_cli(capsys, data_csv, "--gate", "topk", "--K", "2", "--rank-by",
                             "logit")
    assert code == 0, err
    assert "TopKGate(K=2, rank_by='logit'" in out
    code, out, err = fit_cli(capsys, data_csv, "--gate", "temperature", "--tau", "2",
                             "--fixed-tau")
    assert code == 0, err
    assert "TemperatureGate(tau=2.0, learn_tau=False" in out


@pytest.mark.parametrize("args,expected", [
    (["--gate", "topk"], "the topk gate needs --K"),
    (["--K", "2"], "the softmax gate takes no --K"),
    (["--gate", "activation", "--activation", "cosh"], "unknown activation 'cosh'"),
    (["--gate", "topk", "--K", "0"], "K must be an integer >= 1"),
    (["--gate", "nonesuch"], "unknown gate 'nonesuch'"),
])
def test_fit_gate_option_errors_are_one_line(data_csv, capsys, args, expected):
    code, _, err = fit_cli(capsys, data_csv, *args)
    assert code == 2 and expected in one_line(err)


def test_fit_exits_1_and_prints_the_reason_when_the_fit_fails(data_csv, capsys, monkeypatch):
    from gmoe.estimator import MoERegressor

    real_fit = MoERegressor.fit

    def failing_fit(self, X, y, *args, **kwargs):
        import warnings

        real_fit(self, X, y, *args, **kwargs)
        self.result_.reason = "variance at the floor (degenerate fit)"
        warnings.warn("a variance hit\nthe floor", RuntimeWarning, stacklevel=2)
        return self

    monkeypatch.setattr(MoERegressor, "fit", failing_fit)
    code, out, err = fit_cli(capsys, data_csv)
    assert code == 1
    assert "gmoe fit: the fit failed: variance at the floor (degenerate fit)" in err
    # a warning of the fit is one line in the command's voice, no source line
    assert "gmoe: warning: a variance hit the floor" in err.splitlines()
    assert "log-likelihood" in out


def test_fit_of_a_constant_response_warns_and_exits_1(tmp_path, capsys):
    path = tmp_path / "flat.csv"
    path.write_text("x,y\n" + "".join(f"{i / 50},2.5\n" for i in range(50)))
    code, out, err = fit_cli(capsys, path)
    assert code == 1
    # (the number of digits is _scaling's, not the command's)
    assert "gmoe: warning: the response y is constant (2.5 to " in err
    assert "gmoe fit: the fit failed: degenerate variance" in err


def test_fit_shows_a_progress_bar_over_the_em_runs(data_csv, capsys, monkeypatch):
    import tqdm.auto

    seen = []

    class Bar:  # a terminal's bar: records what the fit reports
        def __init__(self, **kwargs):
            self.disable, self.n, self.total = False, 0, kwargs["total"]

        def set_postfix_str(self, text, refresh=True):
            seen.append(text)

        def update(self, step):
            self.n += step

        def close(self):
            seen.append(("closed", self.n, self.total))

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    code, out, err = fit_cli(capsys, data_csv, "--k", "3")
    assert code == 0, err
    # n_init = 1 at k = 3 with init="auto": 1 k-means start, the greedy 2-expert fit
    # (the 1-expert fit, then a split start and an embedding), 1 split start and the
    # embedding of that fit: 6 EM runs; then the 3 final runs are polished
    assert seen[-1] == ("closed", 9, 9)
    assert "k-means start 1/1" in seen[0] and seen[-2] == "polish 3/3"
    code, out, err = fit_cli(capsys, data_csv, "--no-progress")
    assert code == 0 and seen[-1] == ("closed", 9, 9)  # no new bar


# -- the command line itself -------------------------------------------------------------

def test_every_option_of_every_subcommand_has_help():
    from gmoe.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [f"gmoe {name} {action.dest}" for name, p in sub.choices.items()
               for action in p._actions if not action.help]
    missing += [f"gmoe {a.dest}" for a in parser._actions if not a.help]
    assert not missing, missing


def test_version_prints_the_package_version():
    import gmoe

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"gmoe {gmoe.__version__}"


@pytest.mark.parametrize("args", [["list"], ["fit", "DATA", "--n-init", "1"]])
def test_a_closed_pipe_ends_quietly_without_traceback(data_csv, args):
    args = [str(data_csv) if a == "DATA" else a for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "gmoe.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the command writes (`| head`)
    err = proc.stderr.read()
    proc.wait(timeout=600)
    proc.stderr.close()
    assert proc.returncode in (0, 1)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# -- output files are checked before any work --------------------------------------------

def _no_work(monkeypatch):
    """Make the fits of gmoe fit and gmoe select fail the test if they run."""
    from gmoe.estimator import MoERegressor
    from gmoe.selection import select

    def refuse(*args, **kwargs):
        raise AssertionError("the command worked before checking its output file")

    monkeypatch.setattr(MoERegressor, "fit", refuse)
    monkeypatch.setattr(select, "select_experts", refuse)


@pytest.mark.parametrize("command,option,target,expected", [
    ("fit", "--save", "missing/x.json", "--save {}: no such folder"),
    ("fit", "--save", ".", "is a folder"),
    ("select", "--out", "missing/x.png", "--out {}: no such folder"),
    ("select", "--out", ".", "is a folder"),
    ("select", "--out", "tree", "has no suffix"),
    ("select", "--out", "tree.txt", "matplotlib cannot write .txt pictures"),
])
def test_a_bad_output_path_exits_2_before_the_fit(data_csv, capsys, monkeypatch, command,
                                                  option, target, expected):
    _no_work(monkeypatch)
    target = str(data_csv.parent / target)
    code = main([command, str(data_csv), option, target, "--n-init", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert expected.format(target) in one_line(err)


def test_an_unwritable_output_folder_exits_2_before_the_fit(data_csv, capsys, monkeypatch):
    import gmoe._cli_csv

    _no_work(monkeypatch)
    monkeypatch.setattr(gmoe._cli_csv.os, "access", lambda *args: False)
    for command, option in (("fit", "--save"), ("select", "--out")):
        code = main([command, str(data_csv), option, str(data_csv.parent / "x.png")])
        out, err = capsys.readouterr()
        assert code == 2 and not out and "permission denied" in one_line(err)


# -- gmoe select: failed fits choose no k -------------------------------------------------

@pytest.mark.parametrize("method,expected", [
    ("dendrogram", "gmoe select: the 3-expert fit failed: degenerate variance"),
    ("bic", "gmoe select: every fit failed (k = 1 to 3"),
])
def test_select_of_a_constant_response_exits_1_as_fit_does(tmp_path, capsys, method,
                                                           expected):
    path = tmp_path / "flat.csv"
    path.write_text("x1,x2,y\n" + "".join(f"{i / 50},{(i * 7 % 11) / 11},3.0\n"
                                          for i in range(60)))
    png = tmp_path / "tree.png"
    code = main(["select", str(path), "--k-max", "3", "--method", method, "--n-init", "1",
                 "--out", str(png)])
    out, err = capsys.readouterr()
    assert code == 1 and not out and not png.exists()  # no table, no chosen k, no picture
    lines = err.strip().splitlines()
    assert expected in lines[-1] and "no k is chosen" in lines[-1]
    # the rest are the fits' warnings, once each (not matplotlib's, not a traceback)
    assert all(line.startswith("gmoe: warning: ") for line in lines[:-1]), err
    assert sum("the response y is constant" in line for line in lines) == 1
    assert "ylim" not in err and "Traceback" not in err


@pytest.mark.parametrize("body,expected", [
    (b"\xff\xfename = 'x'\n", "is not UTF-8 text"),
    (b'name = "x"\nseed = 1\nreps = 2\n[truth]\nbeta0 = [0.0, 0.0]\n'
     b'beta1 = [[1.0, 2.0], [0.0]]\na = [[1.0], [2.0]]\nb = [0.0, 1.0]\nvar = [1.0, 1.0]\n'
     b'[fit]\nn_experts = 2\n[n_grid]\nvalues = [100, 200, 300]\n',
     "key 'truth.beta1' must be an array of numbers of shape (k, d)"),
    (b'name = "x"\nseed = 1\nreps = 0\n[truth]\nbeta0 = [0.0, 0.0]\n'
     b'beta1 = [[1.0], [0.0]]\na = [[1.0], [2.0]]\nb = [0.0, 1.0]\nvar = [1.0, 1.0]\n'
     b'[fit]\nn_experts = 2\n[n_grid]\nvalues = [100, 200, 300]\n[quick]\nreps = 1\n',
     "key 'reps' must be an integer >= 1, got 0"),
])
def test_run_config_errors_name_the_file_or_key_in_one_line(tmp_path, capsys, body,
                                                           expected):
    path = tmp_path / "bad.toml"
    path.write_bytes(body)
    assert main(["run", str(path), "--quick", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    line = one_line(capsys.readouterr().err)
    assert expected in line and (str(path) in line or "config 'x'" in line)
    assert not (tmp_path / "out").exists()
