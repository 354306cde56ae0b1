from __future__ import annotations

from pathlib import Path

import pytest

from repodepot.exceptions import ConfigurationError
from repodepot.settings import Settings, ensure_secret_key, load_settings


def test_defaults_need_no_configuration() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("./repodepot-data")
    assert settings.sqlalchemy_url.startswith("sqlite+aiosqlite:///")
    assert settings.sqlalchemy_url.endswith("repodepot-data/repodepot.db")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.allowed_schemes == ["https"]
    assert settings.outbound_allowlist == []
    assert settings.admin_token is None and settings.secret_key is None


def test_environment_variables_with_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPODEPOT_ALLOWED_SCHEMES", "https, HTTP")
    monkeypatch.setenv("REPODEPOT_OUTBOUND_ALLOWLIST", "127.0.0.0/8,git.internal,fd00::/8")
    monkeypatch.setenv("REPODEPOT_DATABASE_URL", "postgresql+asyncpg://u@db/repodepot")
    monkeypatch.setenv("REPODEPOT_LISTEN", "[::1]:9000")
    settings = load_settings()
    assert settings.allowed_schemes == ["https", "http"]
    assert settings.outbound_allowlist == ["127.0.0.0/8", "git.internal", "fd00::/8"]
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@db/repodepot"
    assert (settings.host, settings.port) == ("::1", 9000)


def test_precedence_is_overrides_then_environment_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "repodepot.toml"
    config.write_text(
        'listen = "127.0.0.1:7000"\ndata_dir = "/srv/a"\n'
        'allowed_schemes = ["https", "ssh"]\nlog_format = "json"\n'
    )
    from_file = load_settings(config)
    assert from_file.listen == "127.0.0.1:7000" and from_file.allowed_schemes == ["https", "ssh"]
    monkeypatch.setenv("REPODEPOT_LISTEN", "127.0.0.1:7001")
    assert load_settings(config).listen == "127.0.0.1:7001"
    overridden = load_settings(config, listen="127.0.0.1:7002", data_dir=None)
    assert overridden.listen == "127.0.0.1:7002"
    assert overridden.data_dir == Path("/srv/a")  # a None override changes nothing
    assert overridden.log_format == "json"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("REPODEPOT_ALLOWED_SCHEMES", "https,file", "unsupported scheme file"),
        ("REPODEPOT_ALLOWED_SCHEMES", "ext", "unsupported scheme ext"),
        ("REPODEPOT_OUTBOUND_ALLOWLIST", "10.0.0.0/8,not a host", "'not a host' is neither"),
        ("REPODEPOT_LISTEN", "localhost", "'localhost' is not HOST:PORT"),
        ("REPODEPOT_LISTEN", "127.0.0.1:99999", "is not HOST:PORT"),
        ("REPODEPOT_LOG_FORMAT", "xml", "'text' or 'json'"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.field == variable
    assert str(info.value).startswith(variable)
    assert expected in str(info.value)


def test_unknown_keys_in_the_file_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('lisen = "127.0.0.1:1"\n')
    with pytest.raises(ConfigurationError, match="REPODEPOT_LISEN"):
        load_settings(config)
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = ensure_secret_key(settings)
    assert len(key) >= 48
    assert ensure_secret_key(settings) == key
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o777 == 0o600
    given = Settings(data_dir=tmp_path / "other", secret_key="given-key")
    assert ensure_secret_key(given) == "given-key"
    assert not (tmp_path / "other" / "secret_key").exists()


def test_extra_refspecs_are_checked() -> None:
    from repodepot.settings import Settings

    assert Settings(fetch_extra_refspecs="+refs/pull/*:refs/pull/*").fetch_extra_refspecs == [
        "+refs/pull/*:refs/pull/*"
    ]
    with pytest.raises(ValueError, match="is not a refspec"):
        Settings(fetch_extra_refspecs="--upload-pack=sh")
