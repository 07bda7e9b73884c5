import re

from moltbot.security.tokens import new_token, tokens_equal


def test_new_token_is_urlsafe_and_long():
    token = new_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)


def test_new_tokens_differ():
    assert len({new_token() for _ in range(100)}) == 100


def test_tokens_equal():
    token = new_token()
    assert tokens_equal(token, str(token))
    assert not tokens_equal(token, token[:-1])
    assert not tokens_equal(token, new_token())
    assert not tokens_equal(token, "")


def test_tokens_equal_accepts_non_ascii():
    assert tokens_equal("clé", "clé")
    assert not tokens_equal("clé", "cle")
