"""One writer per results folder; reading, de-duplicating and repairing its records."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

import gmoe.records as records_mod
from gmoe.cli import main
from gmoe.config import read_config
from gmoe.records import (
    LOCK_FILE,
    RESULTS_FILE,
    DamagedResultsError,
    DuplicateRecordsWarning,
    ResultsFolder,
    ResultsLockedError,
    ResultsNotWritableError,
    load_results,
    read_records,
    repair_results,
)
from gmoe.sweep import run_sweep


def tiny_config(reps=2, ns=(100, 200)) -> dict:
    data = read_config("softmax-exact")
    data.pop("quick")
    data.update(name="tiny", reps=reps, n_grid={"values": list(ns)})
    data["hellinger"] = {"n_x": 50}
    return data


def record(task: str, n: int = 100, rep: int = 0, **extra) -> dict:
    return {"task": task, "sub": 0, "label": "", "n": n, "n_index": 0, "rep": rep,
            "config_hash": "h", "status": "ok", "loss": 0.1, **extra}


def write_lines(folder, lines: list[str]) -> bytes:
    folder.mkdir(exist_ok=True)
    data = "".join(lines).encode()
    (folder / RESULTS_FILE).write_bytes(data)
    return data


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gmoe.cli", *args], capture_output=True,
                          text=True, timeout=600)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- one writer per folder ---------------------------------------------------------------

def test_a_second_sweep_into_a_locked_folder_is_refused_then_runs_once_it_is_free(tmp_path):
    out = tmp_path / "out"
    with ResultsFolder(out):
        with pytest.raises(ResultsLockedError, match="another gmoe run"):
            run_sweep(tiny_config(reps=1), out, n_jobs=1, progress=False)
        assert not (out / RESULTS_FILE).exists()
    result = run_sweep(tiny_config(reps=1), out, n_jobs=1, progress=False)
    assert result.n_run == 2 and len(read_records(out / RESULTS_FILE)) == 2


def test_gmoe_run_on_a_folder_another_run_writes_says_so_in_one_line_and_exits_2(tmp_path):
    out = tmp_path / "busy"
    with ResultsFolder(out):
        proc = run_cli("run", "softmax-exact", "--quick", "--out", str(out), "--no-progress")
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "another gmoe run" in line and f"pid {os.getpid()}" in line
    assert not (out / RESULTS_FILE).exists()


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    out = tmp_path / "out"
    script = ("import sys, time; from gmoe.records import ResultsFolder; "
              f"ResultsFolder({str(out)!r}).__enter__(); print('locked', flush=True); "
              "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsLockedError):
            ResultsFolder(out).__enter__()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with ResultsFolder(out):  # free again
        pass
    assert (out / LOCK_FILE).exists()


# -- permissions -------------------------------------------------------------------------

def _denied(filename):
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(filename))


def test_a_read_only_folder_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    real_open = os.open

    def os_open(path, *args, **kwargs):  # what a read-only folder does to a new file
        if str(path).startswith(str(out)):
            raise _denied(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(records_mod.os, "open", os_open)
    with pytest.raises(ResultsNotWritableError, match="permission denied"):
        run_sweep(tiny_config(), out, n_jobs=1, progress=False)
    code = main(["run", "softmax-exact", "--quick", "--out", str(out), "--no-progress"])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "permission denied" in line


def test_a_read_only_results_file_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    config = _toml(tmp_path, tiny_config(reps=1))
    out = tmp_path / "out"
    run_sweep(config, out, n_jobs=1, progress=False)

    def read_only_results(path, mode="r", *args, **kwargs):
        if str(path).endswith(RESULTS_FILE) and set(mode) & set("aw+"):
            raise _denied(path)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(records_mod, "open", read_only_results, raising=False)
    with pytest.raises(ResultsNotWritableError, match="permission denied"):
        run_sweep(config, out, n_jobs=1, progress=False)
    assert main(["run", str(config), "--out", str(out), "--no-progress"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out / RESULTS_FILE) in line and "permission denied" in line


def _toml(tmp_path, data: dict):
    """Write a config dict as TOML (only the value types the configs use)."""
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    path = tmp_path / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="file modes do not bind root")
def test_a_chmod_read_only_folder_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        proc = run_cli("run", "softmax-exact", "--quick", "--out", str(out), "--no-progress")
    finally:
        out.chmod(0o755)
    assert proc.returncode == 2
    assert "permission denied" in one_line(proc.stderr)


# -- reading: duplicates, damage, repair -----------------------------------------------------

def test_load_results_keeps_the_first_of_duplicated_tasks_with_a_warning(tmp_path):
    lines = [json.dumps(record("0:0:0", loss=0.1)) + "\n",
             json.dumps(record("0:0:1", rep=1, loss=0.2)) + "\n",
             json.dumps(record("0:0:0", loss=0.9)) + "\n"]
    write_lines(tmp_path, lines)
    with pytest.warns(DuplicateRecordsWarning, match="1 duplicated task records.*gmoe repair"):
        df = load_results(tmp_path)
    assert len(df) == 2 and df.set_index("task").loc["0:0:0", "loss"] == 0.1


def test_a_damaged_line_mid_file_says_how_to_recover(tmp_path):
    lines = [json.dumps(record("0:0:0")) + "\n", '{"task": "0:0:1", "n": 1\n',
             json.dumps(record("0:0:2", rep=2)) + "\n"]
    write_lines(tmp_path, lines)
    with pytest.raises(DamagedResultsError, match=r"line 2 .*gmoe repair .*backs up"):
        load_results(tmp_path)
    proc = run_cli("rates", str(tmp_path))
    assert proc.returncode == 2
    assert "gmoe repair" in one_line(proc.stderr)


def test_repair_keeps_every_intact_task_once_and_backs_up_the_original(tmp_path):
    good = [json.dumps(record(f"0:0:{r}", rep=r)) + "\n" for r in range(4)]
    lines = [good[0], "garbage\n", good[1], good[0], "[1, 2]\n", good[2], good[3],
             '{"task": "0:0:9", "n"']  # a torn last line too
    original = write_lines(tmp_path, lines)
    report = repair_results(tmp_path)
    assert report.kept == 4 and report.damaged == [2, 5, 8] and report.duplicates == 1
    assert (tmp_path / RESULTS_FILE).read_text() == "".join(good)
    assert report.backup == tmp_path / (RESULTS_FILE + ".bak")
    assert report.backup.read_bytes() == original
    assert "kept 4" in report.summary() and str(report.backup) in report.summary()
    again = repair_results(tmp_path)
    assert again.backup is None and "nothing to repair" in again.summary()
    assert len(load_results(tmp_path)) == 4


def test_gmoe_repair_then_run_redoes_only_the_lost_task(tmp_path, capsys):
    cfg = tiny_config()
    out = tmp_path / "out"
    run_sweep(cfg, out, n_jobs=1, progress=False)
    path = out / RESULTS_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:40] + "\n"  # a line damaged mid-file
    path.write_text("".join(lines))
    with pytest.raises(DamagedResultsError):
        run_sweep(cfg, out, n_jobs=1, progress=False)
    assert main(["repair", str(out)]) == 0
    assert "kept 3 task records" in capsys.readouterr().out
    result = run_sweep(cfg, out, n_jobs=1, progress=False)
    assert result.n_run == 1 and result.n_skipped == 3
    tasks = [r["task"] for r in read_records(path)]
    assert sorted(tasks) == sorted(set(tasks)) and len(tasks) == 4


def test_gmoe_repair_of_a_folder_without_results_is_one_line_exit_2(tmp_path):
    proc = run_cli("repair", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "no results.jsonl" in one_line(proc.stderr)


def test_gmoe_rates_on_duplicated_tasks_warns_in_one_line(tmp_path, capsys):
    lines = [json.dumps(record(f"0:{i}:0", n=n)) + "\n"
             for i, n in enumerate((100, 200, 400, 800))]
    write_lines(tmp_path, lines + lines[:1])
    assert main(["rates", str(tmp_path), "--metric", "loss"]) == 0
    err = capsys.readouterr().err
    assert one_line(err).startswith("gmoe: warning: ") and "1 duplicated task" in err


def test_a_folder_with_no_finished_task_is_one_clear_error(tmp_path, capsys):
    # a sweep stopped before its first fit finished: sweep.json and an empty file
    from gmoe.records import EmptyResultsError

    (tmp_path / "sweep.json").write_text(json.dumps({"configs": []}))
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(EmptyResultsError, match="no finished task yet"):
        load_results(tmp_path)
    for command in ("rates", "plot"):
        assert main([command, str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert "no finished task yet" in err and len(err.splitlines()) == 1
