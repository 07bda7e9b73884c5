"""Skills as a pure unit: SKILL.md front matter, bounded sizes, and the attacks a skill name or a
planted link could try (``..``, a linked skill folder, a linked SKILL.md, a FIFO)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moltbot.agent import skills
from moltbot.agent.skills import SkillBook, SkillProblem, parse


def write_skill(root: Path, name: str, description: str = "", body: str = "Do it well.") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    about = description or f"How to {name}."
    (folder / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {about}\n---\n{body}\n")
    return folder


def test_front_matter_gives_name_and_description_and_the_rest_is_the_body() -> None:
    skill = parse(
        '---\nname: weekly-report\ndescription: "Write the weekly report."\n'
        "other: ignored\n---\n# Steps\n1. Gather.\n"
    )
    assert (skill.name, skill.description) == ("weekly-report", "Write the weekly report.")
    assert skill.body == "# Steps\n1. Gather."


@pytest.mark.parametrize(
    "text",
    [
        "no front matter",
        "---\nname: x\ndescription: y\n",  # never closed
        "---\nname: ../up\ndescription: y\n---\n",
        "---\nname: ok\n---\nbody",  # no description
    ],
)
def test_a_malformed_skill_is_refused(text: str) -> None:
    with pytest.raises(SkillProblem):
        parse(text)


def test_listing_shows_names_and_descriptions_and_load_gives_the_body(tmp_path: Path) -> None:
    write_skill(tmp_path, "weekly-report", "Write the report.", "SECRET-STEPS: gather, write.")
    write_skill(tmp_path, "travel", "Plan a trip.")
    (tmp_path / "notes.txt").write_text("not a skill")
    book = SkillBook(tmp_path)
    assert book.listing() == [("travel", "Plan a trip."), ("weekly-report", "Write the report.")]
    assert "SECRET-STEPS" not in repr(book.listing())
    assert book.load("weekly-report").body == "SECRET-STEPS: gather, write."
    assert SkillBook(tmp_path / "missing").listing() == []


def test_a_skill_named_unlike_its_folder_is_left_out(tmp_path: Path) -> None:
    folder = write_skill(tmp_path, "alpha")
    (folder / "SKILL.md").write_text("---\nname: beta\ndescription: d\n---\nbody\n")
    assert SkillBook(tmp_path).listing() == []


def test_sizes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_skill(tmp_path, "long", "x" * 1000, "y" * (skills.MAX_BODY_CHARS + 50))
    big = write_skill(tmp_path, "huge")
    (big / "SKILL.md").write_text("---\nname: huge\ndescription: d\n---\n" + "z" * 70_000)
    book = SkillBook(tmp_path)
    assert [n for n, _ in book.listing()] == ["long"]  # the one over 64 KiB is left out
    long = book.load("long")
    assert len(long.description) == skills.MAX_DESCRIPTION_CHARS
    assert long.body.endswith(f"[... cut at {skills.MAX_BODY_CHARS} characters]")
    with pytest.raises(SkillProblem):
        book.load("huge")
    monkeypatch.setattr(skills, "MAX_SKILLS", 1)
    assert len(SkillBook(tmp_path).listing()) == 1


@pytest.mark.parametrize("name", ["../other", "a/b", "..", "/etc/passwd", "", "UP"])
def test_a_name_with_a_path_in_it_is_refused(tmp_path: Path, name: str) -> None:
    write_skill(tmp_path / "skills", "ok")
    write_skill(tmp_path, "other", body="not yours")  # beside the skills folder
    with pytest.raises(SkillProblem) as info:
        SkillBook(tmp_path / "skills").load(name)
    assert "not yours" not in str(info.value)


def test_links_are_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "skills"
    write_skill(root, "ok")
    outside = write_skill(tmp_path / "elsewhere", "linked", body="planted outside")
    os.symlink(outside, root / "linked")  # a skill folder that is a link
    secret = tmp_path / "MEMORY.md"
    secret.write_text("---\nname: leak\ndescription: d\n---\nthe other profile's memory\n")
    (root / "leak").mkdir()
    os.symlink(secret, root / "leak" / "SKILL.md")  # a SKILL.md that is a link
    (root / "pipe").mkdir()
    os.mkfifo(root / "pipe" / "SKILL.md")  # would hang a plain open()
    book = SkillBook(root)
    assert book.listing() == [("ok", "How to ok.")]
    for name in ("linked", "leak", "pipe"):
        with pytest.raises(SkillProblem):
            book.load(name)
