from __future__ import annotations

import subprocess
import sys

import pytest

from monitor.config import ConfigError, load_config, parse_config


def test_env_vars_expand_with_defaults(tmp_path):
    cfg = parse_config({"brands": [{"name": "${BRAND}"}], "store": "${DB:-fallback.db}"},
                       base_dir=tmp_path, environ={"BRAND": "Acme"})
    assert cfg.brands[0].name == "Acme"
    assert cfg.store_path == tmp_path / "fallback.db"


def test_missing_env_var_names_variable_and_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config({"brands": [{"name": "A"}], "email": {"smtp": {"host": "h", "password": "${SMTP_PASSWORD}"}}},
                     base_dir=tmp_path, environ={})
    assert "SMTP_PASSWORD" in str(err.value) and "email.smtp.password" in str(err.value)


@pytest.mark.parametrize("raw, key", [
    ({"brands": []}, "brands"),
    ({"brands": [{"name": "A"}], "responders": [{"email": "x@y", "min_priority": "P9"}]}, "responders.0.min_priority"),
    ({"brands": [{"name": "A"}], "email": {"smtp": {"host": "h", "port": "many"}}}, "email.smtp.port"),
    ({"brands": [{"name": "A"}], "storee": "x.db"}, "storee"),
])
def test_bad_values_name_the_key(tmp_path, raw, key):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, base_dir=tmp_path)
    assert str(err.value).startswith(key), str(err.value)


def run_cli(*args, cwd=None, input=None, env=None):
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True,
                          cwd=cwd, input=input, env=env, timeout=120)


def test_cli_bad_source_setting_names_key_without_traceback(write_config):
    path = write_config({"sources": {"reddit": {"interval": "often", "subreddits": ["a"]}}})
    result = run_cli("--config", str(path), "check-config")
    assert result.returncode == 2
    assert "sources.reddit.interval" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unknown_source_is_a_config_error(write_config):
    path = write_config({"sources": {"myspace": {}}})
    result = run_cli("--config", str(path), "check-config")
    assert result.returncode == 2 and "sources.myspace" in result.stderr


def test_cli_yaml_syntax_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("brands: [\n")
    result = run_cli("--config", str(path), "check-config")
    assert result.returncode == 2 and "not valid YAML" in result.stderr and "Traceback" not in result.stderr


def test_shipped_config_is_valid():
    from tests.conftest import ROOT
    config = load_config(ROOT / "config.yaml", environ={})
    assert config.rule_paths and all(p.exists() for p in config.rule_paths)
    result = run_cli("--config", str(ROOT / "config.yaml"), "check-config")
    assert result.returncode == 0, result.stderr


def test_without_a_rules_key_the_shipped_packs_rank(tmp_path):
    from tests.conftest import ROOT
    from monitor.config import shipped_rule_packs
    path = tmp_path / "config.yaml"
    path.write_text("brands: [{name: Acme}]\nstore: store.db\n")
    shipped = load_config(ROOT / "config.yaml", environ={})
    # One source of truth: the packs the package ships are the ones the shipped config lists, in its order.
    assert [p.name for p in shipped_rule_packs()] == [p.name for p in shipped.rule_paths]
    assert all(p.read_text(encoding="utf-8") == (ROOT / "rules" / p.name).read_text(encoding="utf-8")
               for p in shipped_rule_packs())
    result = run_cli("--config", str(path), "score", "--json", "Acme charged me twice, I want a refund or I call my lawyer")
    assert result.returncode == 0, result.stderr
    assert json_of(result)["urgency"] > 0
    check = run_cli("--config", str(path), "check-config")
    assert check.returncode == 0 and "from the shipped packs" in check.stdout and "warning" not in check.stderr


def test_empty_rules_list_means_no_rules_with_a_warning(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("brands: [{name: Acme}]\nstore: store.db\nrules: []\n")
    assert load_config(path).rule_paths == []
    check = run_cli("--config", str(path), "check-config")
    assert check.returncode == 0, check.stderr
    assert "0 rules" in check.stdout and "warning" in check.stderr and "no rules" in check.stderr


def json_of(result):
    import json
    return json.loads(result.stdout)


@pytest.mark.parametrize("overrides, key, words", [
    ({"thresholds": {"p1": 50, "p2": 60}}, "thresholds", "p1 > p2 > p3"),
    ({"thresholds": {"p3": 120}}, "thresholds.p3", "100"),
    ({"responders": [{"email": "a@x.test"}, {"email": "A@x.test"}]}, "responders.1.email", "responders.0"),
    ({"responders": [{"email": "a@x.test", "brands": ["Acme air"]}]}, "responders.0.brands.0", "'Acme Air'"),
    ({"responders": [{"email": "a@x.test", "brands": ["Acme Air", "Zeta"]}]}, "responders.0.brands.1", "Zeta"),
    ({"sentiment": {"lexicon": {"refund": -6}}}, "sentiment.lexicon.refund", "-4"),
    ({"sentiment": {"lexicon": {"great": 4.5}}}, "sentiment.lexicon.great", "4"),
    ({"storee": "x.db"}, "storee", "did you mean 'store'?"),
    ({"email": {"smtp": {"host": "h", "prot": 25}}}, "email.smtp.prot", "did you mean 'port'?"),
    ({"email": {"frm": "a@b"}}, "email.frm", "did you mean 'from'?"),
    ({"responders": [{"email": "a@x.test", "quiet_hour": "22:00-07:00"}]}, "responders.0.quiet_hour",
     "did you mean 'quiet_hours'?"),
    ({"colour": "red"}, "colour", "known: brands, sources"),
    ({"store": "postgresql://monitor:hunter2@db.example:5432/cm"}, "store", "PGPASSWORD"),
    ({"store": "mysql://monitor@db.example/cm"}, "store", "unsupported database 'mysql'"),
    ({"store": "postgresql://monitor@db.example:5432"}, "store", "names no database"),
    ({"store": "postgresql://monitor@db.example:notaport/cm"}, "store", "not a database URL"),
    ({"store": " "}, "store", "SQLite file path or a postgresql://"),
])
def test_config_mistakes_are_rejected_naming_the_key(tmp_path, overrides, key, words):
    with pytest.raises(ConfigError) as err:
        parse_config({"brands": [{"name": "Acme Air"}], **overrides}, base_dir=tmp_path)
    message = str(err.value)
    assert message.startswith(f"{key}: ") and words in message, message


def test_unknown_source_setting_suggests_the_key(write_config):
    result = run_cli("--config", str(write_config({"sources": {"rss": {"intervall": 60}}})), "check-config")
    assert result.returncode == 2 and "sources.rss.intervall: unknown key; did you mean 'interval'?" in result.stderr


@pytest.mark.parametrize("window", ["22:00-24:00", "24:00-06:00", "00:00-24:00", "7:30-8:00", "23:59-00:00"])
def test_quiet_hours_that_are_times_of_day_pass(tmp_path, window):
    parse_config({"brands": [{"name": "A"}], "responders": [{"email": "a@x.test", "quiet_hours": window}]},
                 base_dir=tmp_path)


@pytest.mark.parametrize("window", ["18:00-25:00", "22:60-07:00", "24:30-07:00", "22:00", "22:00-07:00-08:00",
                                    "10:00-10:00", "ab:cd-07:00"])
def test_quiet_hours_that_are_not_times_of_day_are_rejected(tmp_path, window):
    with pytest.raises(ConfigError) as err:
        parse_config({"brands": [{"name": "A"}], "responders": [{"email": "a@x.test", "quiet_hours": window}]},
                     base_dir=tmp_path)
    assert str(err.value).startswith("responders.0.quiet_hours: "), str(err.value)


def test_export_to_a_bad_path_is_one_line_and_exit_2(write_config, tmp_path):
    from monitor.store import Store
    config = write_config()
    Store(load_config(config).store_path).close()
    (tmp_path / "a-file").write_text("x")
    for out, fmt in ((tmp_path / "no" / "such" / "dir" / "m.csv", "csv"), (tmp_path / "a-file" / "m.parquet", "parquet"),
                     (tmp_path, "jsonl")):
        result = run_cli("--config", str(config), "export", "--format", fmt, "--out", str(out))
        assert result.returncode == 2, (out, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("command", [["score", "Acme charged me twice"], ["status"], ["explain", "1"]])
def test_output_piped_into_a_reader_that_stops_gives_no_traceback(write_config, command):
    config = write_config()
    if command[0] == "explain":  # a stored mention to explain
        from monitor.pipeline import Pipeline
        from monitor.source import Poll
        from monitor.mention import Mention
        from monitor.store import Store
        loaded = load_config(config)
        outcome = Pipeline(config=loaded, store=Store(loaded.store_path)).process(
            "rss", Poll(mentions=[Mention(source="rss", source_id="1", url="https://x.test/1", title="Acme",
                                          text="Acme charged me twice")]))
        assert len(outcome.stored) == 1
    # Like `| head -0`: the reader is gone before anything is written.
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--config", str(config), *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
