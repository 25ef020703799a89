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
