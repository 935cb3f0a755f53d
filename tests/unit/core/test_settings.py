from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from junctionbox.errors import ConfigurationError
from junctionbox.settings import DEFAULT_DATABASE_URL, load_settings, parse_duration


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.jwt_ttl == timedelta(days=7)
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.is_sqlite


def test_precedence_is_overrides_then_env_then_file(tmp_path: Path) -> None:
    config = tmp_path / "jb.toml"
    config.write_text('[junctionbox]\nport = 9000\nhost = "0.0.0.0"\nlog-level = "debug"\n')
    env = {"JB_CONFIG_FILE": str(config), "JB_PORT": "9100"}
    settings = load_settings({"port": 9200}, environ=env)
    assert settings.port == 9200
    assert settings.host == "0.0.0.0"
    assert settings.log_level == "DEBUG"
    assert load_settings(environ=env).port == 9100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JB_PORT": "eighty"}, "JB_PORT"),
        ({"JB_PORT": "70000"}, "JB_PORT"),
        ({"JB_DATABASE_URL": "mysql://x"}, "JB_DATABASE_URL"),
        ({"JB_JWT_TTL": "soon"}, "JB_JWT_TTL"),
        ({"JB_SECRET_KEY": "short"}, "JB_SECRET_KEY"),
        ({"JB_LOG_FORMAT": "xml"}, "JB_LOG_FORMAT"),
        ({"JB_CONFIG_FILE": "/nonexistent/jb.toml"}, "does not exist"),
    ],
)
def test_invalid_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(environ=env)


def test_unknown_keys_in_the_file_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "jb.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigurationError, match=r"(?i)prot"):
        load_settings(config_file=config, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800), (60, 60)]
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_secret_key_is_never_shown() -> None:
    settings = load_settings(environ={"JB_SECRET_KEY": "x" * 40})
    assert "x" * 40 not in repr(settings)
