import pytest

from gmoe.config import METRICS, ConfigError, expand, list_configs, load_config, read_config


def base() -> dict:
    return read_config("softmax-exact")


def test_builtin_configs_are_listed_and_valid():
    names = list_configs()
    assert {"softmax-exact", "softmax-over"} <= set(names)
    for name in names:
        for quick in (False, True):
            cfgs = load_config(name, quick=quick)
            assert cfgs and all(c.reps >= 1 and len(c.n_values) >= 3 for c in cfgs)


def test_quick_profile_overrides_reps_and_grid():
    full, quick = load_config("softmax-exact")[0], load_config("softmax-exact", quick=True)[0]
    assert quick.reps < full.reps and max(quick.n_values) < max(full.n_values)
    assert full.hash != quick.hash


def test_log_grid_has_requested_ends_and_is_sorted():
    cfg = load_config("softmax-exact")[0]
    ns = cfg.n_values
    assert ns[0] == 100 and ns[-1] == 100000 and ns == sorted(ns)


def test_grid_expands_into_labelled_sub_sweeps_with_distinct_hashes():
    data = base()
    data["grid"] = {"fit.n_experts": [2, 3, 4]}
    cfgs = expand(data)
    assert [c.fit["n_experts"] for c in cfgs] == [2, 3, 4]
    assert [c.label for c in cfgs] == ["n_experts=2", "n_experts=3", "n_experts=4"]
    assert len({c.hash for c in cfgs}) == 3
    assert [c.loss_kind for c in cfgs] == ["exact", "over", "over"]


def test_grid_of_tables_sets_keys_together_under_its_label():
    data = base()
    data["grid"] = {"fit": [{"label": "loose", "stop": "relative", "tol": 1e-6},
                            {"stop": "per_sample", "tol": 1e-9, "accelerate": True}]}
    loose, tight = expand(data)
    assert loose.label == "loose" and "label" not in loose.fit
    assert (loose.fit["stop"], loose.fit["tol"], loose.fit.get("accelerate")) == (
        "relative", 1e-6, None)
    assert (tight.fit["stop"], tight.fit["tol"], tight.fit["accelerate"]) == (
        "per_sample", 1e-9, True)
    assert tight.label == "stop=per_sample, tol=1e-09, accelerate=True"
    # the other fit keys are kept, not replaced
    assert loose.fit["n_experts"] == tight.fit["n_experts"] == base()["fit"]["n_experts"]
    bad = base()
    bad["grid"] = {"fit": [{"stop": "sideways"}]}
    with pytest.raises(ConfigError, match="fit.stop"):
        expand(bad)


def test_accelerate_is_not_defaulted_into_the_table():
    # configs written before the key existed keep their hash (and their results)
    assert "accelerate" not in expand(base())[0].fit


def test_loss_translation_defaults_to_mass_and_accepts_the_three_conventions():
    cfg = expand(base())[0]
    assert cfg.raw["loss"]["translation"] == "mass"
    hashes = {cfg.hash}
    for translation in ("mass", "infimum", "none"):
        data = base()
        data["loss"] = {"translation": translation}
        other = expand(data)[0]
        assert other.raw["loss"]["translation"] == translation
        hashes.add(other.hash)
    # the default is written into the table: an explicit "mass" is the same config, and
    # results of the other conventions are never resumed as "mass" ones
    assert len(hashes) == 3
    assert "loss_infimum" in METRICS and "loss_mass" in METRICS


def test_description_does_not_change_the_hash():
    a = base()
    b = base()
    b["description"] = "something else"
    assert expand(a)[0].hash == expand(b)[0].hash


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(fitt={}), "unknown key 'fitt'"),
    (lambda d: d.update(reps=-3), "key 'reps' must be an integer >= 1, got -3"),
    (lambda d: d.update(reps="40"), "key 'reps' must be an integer"),
    (lambda d: d["fit"].update(n_experts=0), "key 'fit.n_experts'"),
    (lambda d: d["fit"].update(tol="small"),
     "key 'fit.tol': tol must be a positive number, but got 'small'"),
    (lambda d: d["fit"].pop("n_experts"), "key 'fit.n_experts' is missing"),
    (lambda d: d["fit"].update(stop="abs"), "config 'softmax-exact': key 'fit.stop': unknown "
                                            "stop rule 'abs'; expected one of 'relative', "
                                            "'per_sample'"),
    (lambda d: d["fit"].update(init="nearby"), "key 'fit.init'"),
    (lambda d: d["fit"].update(learning_rate=1), "unknown key 'fit.learning_rate'"),
    (lambda d: d["fit"].update(accelerate="yes"),
     "key 'fit.accelerate': accelerate must be True or False, but got 'yes'"),
    (lambda d: d["n_grid"].update(spacing="cubic"), "key 'n_grid.spacing'"),
    (lambda d: d["n_grid"].pop("num"), "key 'n_grid.num' is missing"),
    (lambda d: d["truth"].update(sd=[0.3, -0.4]), "key 'truth'.*'sd' must be finite and > 0"),
    (lambda d: d["truth"].update(gate="sofmax"), "key 'truth.gate'.*unknown gate"),
    (lambda d: d.pop("seed"), "key 'seed' is missing"),
    (lambda d: d.update(metrics=["loss", "speed"]), "key 'metrics'"),
    (lambda d: d.update(grid={"fit.n_experts": []}), "grid.fit.n_experts"),
    (lambda d: d.update(x={"name": "uniform", "d": 2}), "key 'x'"),
    (lambda d: d.update(loss={"translation": "both"}),
     "key 'loss.translation': unknown translation 'both'; expected one of 'mass', "
     "'infimum', 'none'"),
    # the name is the results folder's and the figures': one file-name component
    (lambda d: d.update(name="study/v2"), "key 'name' must be a file name"),
    (lambda d: d.update(name="../../evil"), "key 'name' must be a file name"),
    # a fit gate that needs more experts than the fit has errs at load, not per task
    (lambda d: d["fit"].update(gate={"name": "topk", "K": 5}),
     "key 'fit.gate': the topk gate needs at least 5 experts.*fit.n_experts = 2"),
    (lambda d: (d["fit"].update(gate={"name": "topk", "K": 1}),
                d.update(grid={"fit.gate.K": [1, 7]})),
     "key 'fit.gate': the topk gate needs at least 7"),
    # a grid entry of a gate the [fit] table inherits from the truth
    (lambda d: d.update(grid={"fit.gate.K": [1, 2]}), "write the \\[fit\\] gate out"),
    # a typo in [theory] would drop the verdict silently
    (lambda d: d["theory"].update(losss=-0.5), "key 'theory.losss' names no recorded metric"),
])
def test_malformed_configs_name_the_offending_key(mutate, match):
    data = base()
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        expand(data)


def test_unknown_name_and_missing_file():
    with pytest.raises(ConfigError, match="no built-in config named 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("missing.toml")


def test_invalid_toml_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_builtin_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "softmax-exact").mkdir()
    assert load_config("softmax-exact")[0].name == "softmax-exact"


@pytest.mark.parametrize("key,value,shape", [
    ("beta1", [[25.0, 1.0], [0.0]], r"\(k, d\) with k = 2"),
    ("a", [[-20.0], "x"], r"\(k, d\) with k = 2"),
    ("sd", [0.3, [0.4, 0.1]], r"\(k,\) with k = 2"),
    ("b", {"first": 1.0}, r"\(k,\) with k = 2"),
])
def test_a_ragged_or_non_numeric_truth_array_names_its_key_and_shape(key, value, shape):
    # not numpy's "inhomogeneous shape" without the key
    data = base()
    data["truth"][key] = value
    with pytest.raises(ConfigError, match=rf"key 'truth\.{key}' must be an array of "
                                          rf"numbers of shape {shape}") as err:
        expand(data)
    assert "inhomogeneous" not in str(err.value)


def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe name = 'x'\n")
    with pytest.raises(ConfigError, match=r"config file .*binary\.toml is not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(reps=0), "key 'reps' must be an integer >= 1, got 0"),
    (lambda d: d.update(reps="many"), "key 'reps' must be an integer >= 1, got 'many'"),
    (lambda d: d["n_grid"].update(min=10 ** 6), "key 'n_grid.max' must be >= n_grid.min"),
    (lambda d: d["n_grid"].update(min=0), "key 'n_grid.min' must be an integer >= 2"),
    (lambda d: d["n_grid"].update(spacing="weird"), "key 'n_grid.spacing'"),
])
def test_quick_checks_the_values_its_profile_overrides(mutate, match):
    # the [quick] profile sets reps and n_grid: their full-run values are checked too
    data = base()
    assert {"reps", "n_grid"} <= set(data["quick"])
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        expand(data, quick=True)


def test_the_full_run_checks_the_quick_profile_and_says_so():
    data = base()
    data["quick"]["reps"] = -8
    for quick in (False, True):
        with pytest.raises(ConfigError, match=r"key 'reps' must be an integer >= 1, got -8 "
                                              r"\(with the \[quick\] profile applied\)"):
            expand(data, quick=quick)
