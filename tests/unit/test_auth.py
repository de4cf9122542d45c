"""Bearer tokens: the API refuses what it should, the database keeps no secret, the CLI works."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import problems
from api.auth import AdminAccess, ReadAccess, TokenError, TokenStore
from pilots.tokens import tokens_app


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    tokens = TokenStore(tmp_path / "api-tokens.sqlite")
    yield tokens
    tokens.close()


@pytest.fixture
def client(store: TokenStore) -> Iterator[TestClient]:
    app = FastAPI()
    problems.install(app)
    app.state.tokens = store

    @app.get("/open")
    def open_route() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/data")
    def read_route(principal: ReadAccess) -> dict[str, str]:
        return {"name": principal.name}

    @app.post("/operate")
    def admin_route(principal: AdminAccess) -> dict[str, str]:
        return {"name": principal.name}

    with TestClient(app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == problems.PROBLEM_JSON
    body = response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["detail"]


def test_an_open_route_needs_no_token(client: TestClient) -> None:
    assert client.get("/open").status_code == 200


def test_no_token_is_401_with_a_bearer_challenge_as_problem_json(client: TestClient) -> None:
    response = client.get("/data")
    assert_unauthorized(response)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "pt_abc", "Token pt_abc"]
)
def test_a_malformed_header_is_401(client: TestClient, header: str) -> None:
    assert_unauthorized(client.get("/data", headers={"Authorization": header}))


def test_an_unknown_token_is_401(client: TestClient, store: TokenStore) -> None:
    store.create("alice", "read")
    for token in ("pt_" + "A" * 43, "pt_nope", "x" * 5000):
        response = client.get("/data", headers=bearer(token))
        assert_unauthorized(response)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_revoked_token_is_401(client: TestClient, store: TokenStore) -> None:
    token = store.create("alice", "admin")
    assert client.get("/data", headers=bearer(token)).status_code == 200
    assert store.revoke("alice")
    assert_unauthorized(client.get("/data", headers=bearer(token)))
    assert_unauthorized(client.post("/operate", headers=bearer(token)))


def test_a_read_token_reads_as_its_principal(client: TestClient, store: TokenStore) -> None:
    token = store.create("researcher", "read")
    response = client.get("/data", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"name": "researcher"}


def test_a_read_token_on_an_admin_route_is_403_naming_the_scope(
    client: TestClient, store: TokenStore
) -> None:
    token = store.create("researcher", "read")
    response = client.post("/operate", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["content-type"] == problems.PROBLEM_JSON
    assert "needs the admin scope" in response.json()["detail"]


def test_an_admin_token_opens_both(client: TestClient, store: TokenStore) -> None:
    token = store.create("operator", "admin")
    assert client.get("/data", headers=bearer(token)).json() == {"name": "operator"}
    assert client.post("/operate", headers=bearer(token)).json() == {"name": "operator"}


def test_openapi_shows_the_bearer_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert schema["paths"]["/data"]["get"]["security"] == [{"token": []}]
    assert "security" not in schema["paths"]["/open"]["get"]


def test_an_app_without_a_token_store_fails_closed() -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/data")
    def read_route(principal: ReadAccess) -> dict[str, str]:
        return {"name": principal.name}

    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert test_client.get("/data", headers=bearer("pt_" + "A" * 43)).status_code == 500


def test_tokens_have_the_documented_shape(store: TokenStore) -> None:
    token = store.create("alice", "read")
    assert token.startswith("pt_")
    assert len(token) == 46
    assert token != store.create("bob", "read")


def test_the_database_keeps_the_hash_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / "api-tokens.sqlite"
    store = TokenStore(path)
    token = store.create("alice", "admin")
    store.close()  # checkpoints the WAL into the database file
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(path.name))
    assert token.encode() not in raw
    assert token.removeprefix("pt_").encode() not in raw
    assert hashlib.sha256(token.encode()).hexdigest().encode() in raw


def test_only_the_owner_may_read_or_write_the_database(store: TokenStore) -> None:
    assert store.path.stat().st_mode & 0o077 == 0


def test_list_shows_no_secrets(store: TokenStore) -> None:
    token = store.create("alice", "admin")
    [info] = store.list()
    assert (info.name, info.scope, info.live) == ("alice", "admin", True)
    assert token not in repr(info)


def test_names_are_unique_among_live_tokens(store: TokenStore) -> None:
    store.create("alice", "read")
    with pytest.raises(TokenError, match="alice"):
        store.create("alice", "admin")


def test_a_revoked_name_can_be_reused(store: TokenStore) -> None:
    old = store.create("alice", "read")
    assert store.revoke("alice")
    new = store.create("alice", "admin")
    assert store.verify(old) is None
    principal = store.verify(new)
    assert principal is not None
    assert (principal.name, principal.scope) == ("alice", "admin")
    assert [(t.name, t.live) for t in store.list(include_revoked=True)] == [
        ("alice", False),
        ("alice", True),
    ]


def test_revoke_by_id_and_revoking_nothing(store: TokenStore) -> None:
    token = store.create("alice", "read")
    [info] = store.list()
    assert store.revoke(str(info.id))
    assert store.verify(token) is None
    assert not store.revoke(info.id)
    assert not store.revoke("nobody")


@pytest.mark.parametrize("name", ["", "1234", "has space", "x" * 65, "-dash"])
def test_bad_names_are_refused(store: TokenStore, name: str) -> None:
    with pytest.raises(TokenError, match="token name"):
        store.create(name, "read")


def test_a_bad_scope_is_refused(store: TokenStore) -> None:
    with pytest.raises(TokenError, match="scope"):
        store.create("alice", "root")  # type: ignore[arg-type]


def test_another_process_sees_a_new_token_at_once_and_a_revocation_within_a_second(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TokenStore, "REMEMBER_S", 0.05)
    other = TokenStore(store.path)
    token = other.create("alice", "read")
    assert store.verify(token) is not None
    other.revoke("alice")
    time.sleep(0.06)
    assert store.verify(token) is None
    other.close()


def test_revoking_in_the_same_process_takes_effect_at_once(store: TokenStore) -> None:
    token = store.create("alice", "read")
    assert store.verify(token) is not None
    store.revoke("alice")
    assert store.verify(token) is None


def test_concurrent_verify_from_threads(store: TokenStore) -> None:
    tokens = {store.create(f"user{i}", "read" if i % 2 else "admin"): f"user{i}" for i in range(8)}
    revoked = store.create("gone", "read")
    store.revoke("gone")
    cases = [*tokens, revoked, "pt_" + "A" * 43] * 50

    def check(token: str) -> bool:
        principal = store.verify(token)
        expected = tokens.get(token)
        return (principal.name if principal else None) == expected

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(check, cases))


def test_an_unreadable_database_is_a_token_error(tmp_path: Path) -> None:
    path = tmp_path / "api-tokens.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(TokenError, match="token database"):
        TokenStore(path)


def test_in_data_dir_names_the_file(tmp_path: Path) -> None:
    store = TokenStore.in_data_dir(tmp_path / "var")
    assert store.path == tmp_path / "var" / "api-tokens.sqlite"
    store.close()
    assert sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM tokens").fetchone() == (0,)


runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PILOTS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_cli_create_list_revoke(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenStore, "REMEMBER_S", 0.0)
    created = runner.invoke(tokens_app, ["create", "--name", "alice", "--scope", "admin"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert "shown only now" in created.stderr
    store = TokenStore.in_data_dir(cli_env)
    principal = store.verify(token)
    assert principal is not None
    assert (principal.name, principal.scope) == ("alice", "admin")

    listed = runner.invoke(tokens_app, ["list"])
    assert listed.exit_code == 0
    assert "alice" in listed.output
    assert "admin" in listed.output
    assert token not in listed.output
    assert token.removeprefix("pt_")[:8] not in listed.output

    revoked = runner.invoke(tokens_app, ["revoke", "alice"])
    assert revoked.exit_code == 0, revoked.output
    assert store.verify(token) is None
    assert "no tokens" in runner.invoke(tokens_app, ["list"]).output
    assert "alice" in runner.invoke(tokens_app, ["list", "--all"]).output
    store.close()


def test_cli_errors_exit_nonzero_with_a_message(cli_env: Path) -> None:
    assert runner.invoke(tokens_app, ["create", "--name", "alice"]).exit_code == 0
    again = runner.invoke(tokens_app, ["create", "--name", "alice"])
    assert again.exit_code == 1
    assert "already named 'alice'" in again.stderr
    missing = runner.invoke(tokens_app, ["revoke", "bob"])
    assert missing.exit_code == 1
    assert "no live token" in missing.stderr
    assert runner.invoke(tokens_app, ["create", "--name", "x", "--scope", "root"]).exit_code == 2


def test_cli_help_comes_from_the_docstrings() -> None:
    result = runner.invoke(tokens_app, ["create", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "shown this once" in result.output
    assert "--scope" in result.output
