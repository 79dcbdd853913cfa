"""palyra.toml ``[webhooks]`` (SPEC §7): defaults, values, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from palyrad.runtime.config import ConfigError, DaemonConfig, load_config


def _load(tmp_path: Path, text: str) -> DaemonConfig:
    path = tmp_path / "palyra.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults_are_specs(tmp_path: Path) -> None:
    for cfg in (load_config(tmp_path / "absent.toml"), _load(tmp_path, "[webhooks]\n")):
        assert (
            cfg.webhook_listen,
            cfg.webhook_port,
            cfg.webhook_tls,
            cfg.webhook_max_body_bytes,
            cfg.webhook_rate_per_minute,
        ) == ("127.0.0.1", 7143, False, 1_048_576, 60)


def test_values(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[webhooks]\nlisten = "::1"\nport = 0\ntls = true\nmax_body_bytes = 4096\n'
        "rate_per_minute = 5\n",
    )
    assert (
        cfg.webhook_listen,
        cfg.webhook_port,
        cfg.webhook_tls,
        cfg.webhook_max_body_bytes,
        cfg.webhook_rate_per_minute,
    ) == ("::1", 0, True, 4096, 5)
    assert _load(tmp_path, '[webhooks]\nlisten = "hooks.example.org"\n').webhook_listen == (
        "hooks.example.org"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("port = 65536", "[webhooks] port must be 0-65535 (0 = any free port)"),
        ("port = -1", "[webhooks] port must not be negative"),
        ('port = "7143"', "[webhooks] port must be an integer"),
        ("tls = 1", "[webhooks] tls must be true or false"),
        ('tls = "yes"', "[webhooks] tls must be true or false"),
        ("max_body_bytes = 0", "[webhooks] max_body_bytes must be 1-67108864"),
        ("max_body_bytes = 67108865", "[webhooks] max_body_bytes must be 1-67108864"),
        ("rate_per_minute = 0", "[webhooks] rate_per_minute must be 1-1000000"),
        ("rate_per_minute = true", "[webhooks] rate_per_minute must be an integer"),
        ('listen = ["127.0.0.1"]', "[webhooks] listen must be a string"),
        ('listen = "not a host"', "[webhooks] listen 'not a host' is not an IP address"),
        ("secret = 1", "unknown key [webhooks] secret"),
    ],
)
def test_refusals(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, f"[webhooks]\n{line}\n")
    assert message in str(info.value)
