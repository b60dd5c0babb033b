"""`saleday token` and the secrets check of `saleday serve --http`, as a user types them."""

from __future__ import annotations

import jwt
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.http.settings import HttpSettings, with_secrets

runner = CliRunner()
SECRET = "t" * 40


def test_token_prints_a_jwt_for_the_user(monkeypatch):
    """`saleday token --user U --ttl N` prints an HS256 token whose subject is U."""
    monkeypatch.setenv("SALEDAY_HTTP_JWT_SECRET", SECRET)
    result = runner.invoke(app, ["token", "--user", "u-7", "--ttl", "60"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="saleday-api")
    assert claims["sub"] == "u-7" and claims["exp"] - claims["iat"] == 60


def test_token_signs_with_the_dev_secrets_under_the_data_dir(monkeypatch, tmp_path):
    """Without SALEDAY_HTTP_JWT_SECRET, `token` signs with the development secret that
    `serve --http --dev-secrets` wrote under --data."""
    monkeypatch.delenv("SALEDAY_HTTP_JWT_SECRET", raising=False)
    settings, _ = with_secrets(HttpSettings(), data_dir=tmp_path, dev=True)
    result = runner.invoke(app, ["token", "--user", "u", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert jwt.decode(result.stdout.strip(), settings.secret("jwt_secret"), algorithms=["HS256"],
                      audience="saleday-api")["sub"] == "u"


def test_token_without_a_secret_or_with_a_bad_user_exits_2(monkeypatch, tmp_path):
    """No secret anywhere, a secret too short, or a user id that is not one: exit 2 with one
    line saying so, and no traceback."""
    monkeypatch.delenv("SALEDAY_HTTP_JWT_SECRET", raising=False)
    result = runner.invoke(app, ["token", "--user", "u", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "SALEDAY_HTTP_JWT_SECRET" in result.output
    monkeypatch.setenv("SALEDAY_HTTP_JWT_SECRET", "short")
    result = runner.invoke(app, ["token", "--user", "u"])
    assert result.exit_code == 2 and "at least 32" in result.output
    monkeypatch.setenv("SALEDAY_HTTP_JWT_SECRET", SECRET)
    result = runner.invoke(app, ["token", "--user", "not a user"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_serve_http_without_secrets_refuses_before_starting_anything(monkeypatch, tmp_path):
    """`saleday serve --http` with no secrets set and no --dev-secrets exits 2 naming the
    variables, before it starts Ray or a shard."""
    for name in ("JWT_SECRET", "WEBHOOK_SECRET", "OPERATOR_TOKEN"):
        monkeypatch.delenv(f"SALEDAY_HTTP_{name}", raising=False)
    monkeypatch.setenv("SALEDAY_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["serve", "--http"])
    assert result.exit_code == 2
    assert "SALEDAY_HTTP_JWT_SECRET" in result.output and "--dev-secrets" in result.output
    assert not (tmp_path / "events.db").exists()


def test_serve_http_starts_one_shard_of_each_busy_kind_per_four_cpus():
    """`serve --http` without --shards starts every kind the API needs: one sku, session and
    order shard per 4 CPUs (at least one), one campaign and one team shard."""
    from saleday.http.cli import http_shards

    assert http_shards(2) == {"sku": 1, "session": 1, "order": 1, "campaign": 1, "team": 1}
    assert http_shards(8) == {"sku": 2, "session": 2, "order": 2, "campaign": 1, "team": 1}
    assert http_shards(17)["sku"] == 4
