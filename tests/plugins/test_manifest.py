"""Manifest validation, capability intersection, plugin config and the sha256 pin."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import msgspec
import pytest

from moltbot.errors import PluginError
from moltbot.plugins.loader import prepare
from moltbot.plugins.manifest import (
    Manifest,
    effective_capabilities,
    is_bundled,
    main,
    parse_manifest,
    source_digest,
    validate_config,
    verify_pin,
)
from tests.plugins.fixtures.configured import Settings
from tests.plugins.support import EXAMPLES, FIXTURES, entry

PC = entry("demo", "demo_mod")


def test_a_manifest_dict_is_validated_into_a_manifest() -> None:
    m = parse_manifest(
        {"name": "demo", "version": "1.2.3", "capabilities": ["tools", "storage"]}, PC
    )
    assert m == Manifest(name="demo", version="1.2.3", capabilities=["tools", "storage"])
    assert parse_manifest(m, PC) is m


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (None, "has no MANIFEST"),
        ({"name": "demo"}, "missing required field `version`"),
        ({"name": "demo", "version": "1", "capabilities": ["root"]}, "capabilities[0]"),
        ({"name": "demo", "version": "1", "colour": "red"}, "unknown field `colour`"),
        ({"name": "demo", "version": "1", "config": {"type": "object"}}, "msgspec.Struct"),
        ({"name": "Demo!", "version": "1"}, "$.name"),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_plugin(raw: object, needle: str) -> None:
    with pytest.raises(PluginError) as err:
        parse_manifest(raw, PC)
    assert "plugin 'demo' (module demo_mod)" in str(err.value)
    assert needle in str(err.value)


def test_unknown_capability_error_lists_the_vocabulary() -> None:
    with pytest.raises(PluginError) as err:
        parse_manifest({"name": "demo", "version": "1", "capabilities": ["root"]}, PC)
    assert err.value.hint.startswith("capabilities are: channel, gateway_methods, network")


def test_manifest_name_and_pinned_version_must_match_the_config() -> None:
    with pytest.raises(PluginError, match="calls itself 'other'") as err:
        parse_manifest({"name": "other", "version": "1"}, PC)
    assert "set the plugin's name to 'other'" in err.value.hint
    with pytest.raises(PluginError, match=r"version 1\.0 is installed, the config asks for 2\.0"):
        parse_manifest({"name": "demo", "version": "1.0"}, entry("demo", "m", version="2.0"))
    assert parse_manifest({"name": "demo", "version": "2.0"}, entry("demo", "m", version="2.0"))


def test_capabilities_are_what_config_grants_and_the_manifest_asks_for() -> None:
    m = Manifest(name="demo", version="1", capabilities=["tools", "network", "secrets"])
    pc = entry("demo", "m", capabilities=["tools", "storage", "secrets"], secrets=["tok"])
    assert effective_capabilities(pc, m) == frozenset({"tools", "secrets"})
    assert effective_capabilities(entry("demo", "m"), m) == frozenset()


def test_config_grants_are_checked() -> None:
    m = Manifest(name="demo", version="1", capabilities=["tools"])
    with pytest.raises(PluginError, match="unknown capability netwrk in config"):
        effective_capabilities(entry("demo", "m", capabilities=["tools", "netwrk"]), m)
    with pytest.raises(PluginError, match="config lists secrets") as err:
        effective_capabilities(entry("demo", "m", capabilities=["tools"], secrets=["tok"]), m)
    assert "grant 'secrets'" in err.value.hint


def test_plugin_config_is_validated_against_the_manifest_schema() -> None:
    m = Manifest(name="configured", version="1", config=Settings)
    got = validate_config(entry("configured", "m", config={"every_s": 2}), m)
    assert got == Settings(every_s=2.0)
    with pytest.raises(PluginError) as err:
        validate_config(entry("configured", "m", config={"every_s": "soon"}), m)
    text = str(err.value)
    assert text.startswith("plugin 'configured': invalid config: Expected `float`, got `str`")
    assert "$.plugins[configured].config.every_s" in text
    with pytest.raises(PluginError, match="missing required field `every_s`") as err:
        validate_config(entry("configured", "m"), m)
    assert "$.plugins[configured].config" in str(err.value)
    with pytest.raises(PluginError, match="unknown field `colour`"):
        validate_config(entry("configured", "m", config={"every_s": 1, "colour": "red"}), m)


def test_a_plugin_without_a_schema_takes_no_config() -> None:
    m = Manifest(name="demo", version="1")
    assert validate_config(PC, m) is None
    with pytest.raises(PluginError, match="takes no config, got keys: a, b"):
        validate_config(entry("demo", "m", config={"b": 1, "a": 2}), m)


# --- the sha256 pin ---------------------------------------------------------------------------
@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A fresh importable package that leaves a mark when it is imported."""
    name = f"pinpkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_name('imported.mark').write_text('yes')\n"
        "MANIFEST = {'name': 'pinned', 'version': '1'}\n"
        "def setup(api):\n    pass\n"
    )
    (root / "sub" / "helpers.py").write_text("X = 1\n")
    (root / "notes.txt").write_text("not code\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root
    sys.modules.pop(name, None)


def test_digest_covers_every_file_path_and_content(package: tuple[str, Path]) -> None:
    name, root = package
    first = source_digest(name)
    assert len(first) == 64 and first == source_digest(name)
    (root / "notes.txt").write_text("changed\n")  # data files are covered too
    assert source_digest(name) != first
    (root / "notes.txt").write_text("not code\n")
    assert source_digest(name) == first
    (root / "sub" / "helpers.py").write_text("X = 2\n")
    second = source_digest(name)
    assert second != first
    (root / "sub" / "helpers.py").rename(root / "sub" / "other.py")
    assert source_digest(name) != second  # same bytes, another path
    (root / "sub" / "extra.py").write_text("")
    assert len({first, second, source_digest(name)}) == 3


def test_a_single_file_module_is_hashed_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"onefile_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("MANIFEST = {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = source_digest(name)
    (tmp_path / f"{name}.py").write_text("MANIFEST = {'x': 1}\n")
    assert source_digest(name) != digest


def test_pin_ok_loads_the_plugin(package: tuple[str, Path]) -> None:
    name, root = package
    pc = entry("pinned", name, sha256=source_digest(name))
    assert verify_pin(pc) == pc.sha256
    loaded = prepare(pc)
    assert loaded.digest == pc.sha256
    assert (root / "imported.mark").exists()


def test_pin_mismatch_is_refused_before_any_plugin_code_runs(package: tuple[str, Path]) -> None:
    name, root = package
    pinned = source_digest(name)
    (root / "sub" / "helpers.py").write_text("X = 'tampered'\n")
    actual = source_digest(name)
    pc = entry("pinned", name, sha256=pinned)
    with pytest.raises(PluginError) as err:
        prepare(pc)
    text = str(err.value)
    assert "plugin 'pinned'" in text
    assert f"source digest {actual[:12]}... does not match the pinned {pinned[:12]}..." in text
    assert actual not in text and pinned not in text  # only the prefixes
    assert f"python -m moltbot.plugins {name}" in err.value.hint
    assert not (root / "imported.mark").exists()
    assert name not in sys.modules


def test_a_module_that_is_not_installed_is_refused() -> None:
    with pytest.raises(PluginError, match="plugin module no_such_plugin_xyz is not installed"):
        verify_pin(entry("demo", "no_such_plugin_xyz"))
    with pytest.raises(PluginError, match="is not installed"):
        verify_pin(entry("demo", "no_such_pkg_xyz.sub"))


def test_digest_command_prints_the_pin(
    package: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = package
    assert main([name]) == 0
    assert capsys.readouterr().out.strip() == source_digest(name)
    assert main(["no_such_plugin_xyz"]) == 1
    assert "is not installed" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.parametrize(
    ("rel", "why"),
    [
        ("__pycache__/helpers.cpython-311.pyc", "a bytecode cache folder"),
        ("sub/fast.cpython-311-x86_64-linux-gnu.so", "compiled or native code, or a .pth file"),
        ("evil.pth", "compiled or native code, or a .pth file"),
        ("sub/old.pyc", "compiled or native code, or a .pth file"),
    ],
)
def test_compiled_native_and_pth_files_are_refused(
    package: tuple[str, Path], rel: str, why: str
) -> None:
    name, root = package
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(b"\0")
    shown = rel.split("/")[0] if rel.startswith("__pycache__") else rel
    with pytest.raises(PluginError, match=re.escape(f"{name}: {shown} is {why}")) as err:
        verify_pin(entry("pinned", name))
    assert "pin the plugin again" in err.value.hint


def test_a_symlink_in_the_plugin_is_refused(package: tuple[str, Path], tmp_path: Path) -> None:
    name, root = package
    (root / "link.py").symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(PluginError, match=r"link\.py is a symbolic link"):
        source_digest(name)


def test_a_plugin_not_bundled_must_be_pinned_and_the_error_gives_the_digest(
    package: tuple[str, Path],
) -> None:
    name, root = package
    with pytest.raises(PluginError) as err:
        verify_pin(entry("pinned", name))
    digest = source_digest(name)
    assert "plugin 'pinned' is not pinned" in err.value.user_message
    assert f"set plugins[pinned].sha256 to {digest}" in err.value.user_message
    assert not (root / "imported.mark").exists()


def test_the_bundled_example_runs_without_a_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert is_bundled("reminders_plugin")
    assert verify_pin(entry("reminders", "reminders_plugin")) == source_digest("reminders_plugin")


def test_http_hosts_need_the_network_capability() -> None:
    manifest = Manifest(name="web", version="1", capabilities=["network", "tools"])
    pc = entry("web", "m", capabilities=["tools"], http_hosts=["api.example.com"])
    with pytest.raises(PluginError, match="lists http_hosts but the 'network' capability") as err:
        effective_capabilities(pc, manifest)
    assert "plugins[].http_hosts" in err.value.hint
    granted = entry("web", "m", capabilities=["tools", "network"], http_hosts=["api.example.com"])
    assert effective_capabilities(granted, manifest) == {"network", "tools"}
    with pytest.raises(msgspec.ValidationError, match=r"\$.http_hosts\[0\]"):
        entry("web", "m", http_hosts=["https://api.example.com/"])


def test_only_the_listed_examples_are_bundled(package: tuple[str, Path]) -> None:
    name, _ = package
    assert not is_bundled(name)
    assert not is_bundled(f"{FIXTURES}.relay")  # in moltbot's tree, but not bundled
