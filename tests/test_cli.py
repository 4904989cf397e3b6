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
    assert (tmp_path / "fig" / "softmax-exact_loss.png").exists()
    assert (tmp_path / "fig" / "softmax-exact.rates.csv").exists()
    assert "hellinger" in proc.stdout


def test_dask_backend_without_dask_exits_2_naming_the_extra(monkeypatch, capsys):
    for name in ("dask", "distributed", "dask.distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    assert main(["run", "softmax-exact", "--quick", "--backend", "dask"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gmoe[dask]" in err[0]
