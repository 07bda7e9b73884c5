import json
import os
import pickle
import stat

import pytest

from moltbot import paths
from moltbot.errors import (
    NotFound,
    PermissionProblem,
    SecretNotFound,
    VaultError,
    VaultKeyError,
)
from moltbot.security.vault import PASSPHRASE_ENV, Vault, lazy_get

LOW_N = 2**10
PLAINTEXT = "sk-ant-VERY-SECRET-value-0123456789"


@pytest.fixture(autouse=True)
def no_env_passphrase(monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def all_bytes_under(folder):
    return [p.read_bytes() for p in folder.rglob("*") if p.is_file()]


def test_create_key_file_vault_modes(home):
    Vault.create(home)
    creds = paths.credentials_dir(home)
    assert mode(creds) == 0o700
    assert len(paths.key_file(home).read_bytes()) == 32
    for f in creds.iterdir():
        assert mode(f) == 0o600, f
    assert Vault.exists(home)


def test_roundtrip_and_names(home):
    v = Vault.create(home)
    v.set("anthropic_api_key", PLAINTEXT)
    v.set("telegram.bot-token", "123:abc")
    v2 = Vault.open(home)
    assert v2.get("anthropic_api_key") == PLAINTEXT
    assert v2.names() == ["anthropic_api_key", "telegram.bot-token"]
    assert "anthropic_api_key" in v2
    assert "missing" not in v2
    assert "../etc" not in v2
    assert 42 not in v2
    assert mode(paths.credentials_dir(home) / "anthropic_api_key.enc") == 0o600
    assert v2.delete("anthropic_api_key") is True
    assert v2.delete("anthropic_api_key") is False
    assert v2.names() == ["telegram.bot-token"]


def test_unicode_value(home):
    v = Vault.create(home)
    v.set("u", "pässwörd ✓\nline2")
    assert Vault.open(home).get("u") == "pässwörd ✓\nline2"


def test_ciphertext_contains_no_plaintext(home):
    v = Vault.create(home)
    v.set("k", PLAINTEXT)
    blobs = all_bytes_under(paths.credentials_dir(home))
    assert blobs
    for needle in (PLAINTEXT.encode(), PLAINTEXT.encode("utf-16-le"), b"VERY-SECRET"):
        assert not any(needle in blob for blob in blobs)


def test_record_format_and_fresh_nonce(home):
    v = Vault.create(home)
    path = paths.credentials_dir(home) / "k.enc"
    v.set("k", PLAINTEXT)
    first = json.loads(path.read_bytes())
    v.set("k", PLAINTEXT)
    second = json.loads(path.read_bytes())
    assert first["v"] == 1 and set(first) == {"v", "nonce", "ct"}
    assert first["nonce"] != second["nonce"]
    assert first["ct"] != second["ct"]


def test_swapped_files_do_not_decrypt(home):
    v = Vault.create(home)
    v.set("a", "value-a")
    v.set("b", "value-b")
    creds = paths.credentials_dir(home)
    a, b = (creds / "a.enc").read_bytes(), (creds / "b.enc").read_bytes()
    (creds / "a.enc").write_bytes(b)
    (creds / "b.enc").write_bytes(a)
    for name in ("a", "b"):
        with pytest.raises(VaultError) as err:
            v.get(name)
        assert "value-" not in str(err.value)
        assert name in str(err.value)


def test_tampered_ciphertext_fails(home):
    v = Vault.create(home)
    v.set("a", "value-a")
    path = paths.credentials_dir(home) / "a.enc"
    rec = json.loads(path.read_bytes())
    rec["ct"] = rec["ct"][:-4] + ("AAAA" if rec["ct"][-4:] != "AAAA" else "BBBB")
    path.write_text(json.dumps(rec))
    with pytest.raises(VaultError):
        v.get("a")
    path.write_text("not json")
    with pytest.raises(VaultError):
        v.get("a")


def test_missing_secret_names_it(home):
    v = Vault.create(home)
    with pytest.raises(SecretNotFound) as err:
        v.get("nope")
    assert isinstance(err.value, NotFound) and isinstance(err.value, VaultError)
    assert "nope" in str(err.value)


@pytest.mark.parametrize("bad", ["", "1abc", "a/b", "../x", ".hidden", "a" * 65, "a b", "x\n"])
def test_invalid_names_refused(home, bad):
    v = Vault.create(home)
    with pytest.raises(VaultError):
        v.set(bad, "x")
    with pytest.raises(VaultError):
        v.get(bad)
    assert list(paths.credentials_dir(home).glob("*.enc")) == []


def test_wrong_key_file(home, tmp_path):
    Vault.create(home)
    other = tmp_path / "other"
    Vault.create(other)
    paths.key_file(home).write_bytes(paths.key_file(other).read_bytes())
    with pytest.raises(VaultKeyError) as err:
        Vault.open(home)
    assert str(paths.key_file(home)) in str(err.value)
    assert err.value.hint


def test_truncated_key_file(home):
    Vault.create(home)
    paths.key_file(home).write_bytes(b"short")
    with pytest.raises(VaultKeyError):
        Vault.open(home)


def test_key_file_0644_refused(home):
    Vault.create(home)
    key = paths.key_file(home)
    os.chmod(key, 0o644)
    with pytest.raises(PermissionProblem) as err:
        Vault.open(home)
    assert str(key) in str(err.value)
    assert err.value.hint == f"chmod 600 {key}"


def test_open_folder_refused(home):
    Vault.create(home)
    creds = paths.credentials_dir(home)
    os.chmod(creds, 0o755)
    with pytest.raises(PermissionProblem) as err:
        Vault.open(home)
    assert err.value.hint == f"chmod 700 {creds}"


def test_passphrase_vault(home):
    v = Vault.create(home, "correct horse battery staple", scrypt_n=LOW_N)
    v.set("k", PLAINTEXT)
    creds = paths.credentials_dir(home)
    assert not paths.key_file(home).exists()
    salt = json.loads((creds / "vault.salt").read_bytes())
    assert salt["kdf"] == "scrypt" and salt["n"] == LOW_N
    assert mode(creds / "vault.salt") == 0o600
    v2 = Vault.open(home, "correct horse battery staple", scrypt_n=LOW_N)
    assert v2.get("k") == PLAINTEXT
    for blob in all_bytes_under(creds):
        assert b"correct horse" not in blob
        assert PLAINTEXT.encode() not in blob


def test_wrong_passphrase(home):
    Vault.create(home, "right", scrypt_n=LOW_N)
    with pytest.raises(VaultKeyError) as err:
        Vault.open(home, "wrong", scrypt_n=LOW_N)
    assert "wrong" not in str(err.value).replace("wrong key", "")
    assert PASSPHRASE_ENV in err.value.hint


def test_passphrase_from_env(home, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "from-env")
    Vault.create(home, scrypt_n=LOW_N).set("k", "v")
    assert (paths.credentials_dir(home) / "vault.salt").exists()
    assert Vault.open(home).get("k") == "v"
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(VaultKeyError) as err:
        Vault.open(home)
    assert PASSPHRASE_ENV in err.value.hint


def test_passphrase_given_to_key_file_vault(home):
    Vault.create(home)
    with pytest.raises(VaultKeyError):
        Vault.open(home, "something")


def test_empty_passphrase_refused(home):
    with pytest.raises(VaultError):
        Vault.create(home, "")


def test_create_refuses_existing(home):
    v = Vault.create(home)
    v.set("k", "keep me")
    with pytest.raises(VaultError):
        Vault.create(home)
    assert Vault.open(home).get("k") == "keep me"


def test_open_missing_vault(home, monkeypatch):
    with pytest.raises(VaultError) as err:
        Vault.open(home)
    assert err.value.hint == "moltbot init"
    assert not Vault.exists(home)
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    assert not Vault.exists()
    Vault.create(home)
    assert Vault.exists()
    assert Vault.open().names() == []


def test_repr_and_pickle_never_leak(home):
    v = Vault.create(home)
    v.set("k", PLAINTEXT)
    key = paths.key_file(home).read_bytes()
    text = repr(v)
    assert "Vault" in text and PLAINTEXT not in text
    assert key.hex() not in text and repr(key) not in text
    with pytest.raises(TypeError):
        pickle.dumps(v)


def test_on_read_hears_each_returned_name_and_can_refuse(home):
    Vault.create(home).set("api", PLAINTEXT)
    heard = []
    vault = Vault.open(home, on_read=heard.append)
    assert vault.get("api") == PLAINTEXT
    with pytest.raises(SecretNotFound):
        vault.get("missing")  # nothing was read: nothing heard
    assert "api" in vault and vault.names() == ["api"]  # names are not reads
    assert heard == ["api"]

    def refuse(name):
        raise VaultError(f"cannot record the read of {name}")

    with pytest.raises(VaultError, match="cannot record"):
        Vault.open(home, on_read=refuse).get("api")


def test_lazy_get_opens_the_vault_at_first_use(home, monkeypatch):
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    heard = []
    get = lazy_get(on_read=heard.append)  # no vault yet: nothing is opened here
    Vault.create(home).set("api", PLAINTEXT)
    assert get("api") == PLAINTEXT and get("api") == PLAINTEXT
    assert heard == ["api", "api"]
