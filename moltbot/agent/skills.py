"""Skills: folders of a profile's skills folder, each with a ``SKILL.md``.

```
---
name: weekly-report
description: How to write the owner's weekly report.
---
The body: instructions the model reads when it loads the skill.
```

The model is shown only each skill's name and description (in the ``skill`` tool's
description); the ``skill`` tool loads one body into the turn when the model asks. Everything
is bounded: at most ``MAX_SKILLS`` skills, ``MAX_FILE_BYTES`` per ``SKILL.md``, a short name
and description, a body cut at ``MAX_BODY_CHARS``.

Only the owner writes the skills folder, but a skill is reached without trusting what is in it:
the name the model gives must be one of the listed names (no ``/``, no ``..``), and the skill's
folder and its ``SKILL.md`` are opened from the skills folder's descriptor with ``O_NOFOLLOW``,
so a symbolic link (to ``/etc``, to another profile's memory) is refused, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

SKILL_FILE = "SKILL.md"
MAX_SKILLS = 64
MAX_FILE_BYTES = 64 * 1024
MAX_BODY_CHARS = 20_000
MAX_DESCRIPTION_CHARS = 300
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class Skill(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    body: str


class SkillProblem(Exception):
    """A skill that cannot be used; the text is safe to show the model."""


def parse(text: str) -> Skill:
    """A ``SKILL.md``'s front matter (``name``, ``description``) and body."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise SkillProblem("SKILL.md must start with a front matter block (---)")
    try:
        end = next(i for i in range(1, min(len(lines), 40)) if lines[i].strip() == "---")
    except StopIteration:
        raise SkillProblem("the front matter of SKILL.md is not closed with ---") from None
    fields: dict[str, str] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("name", "description"):
            fields[key.strip()] = value.strip().strip("\"'")
    name, description = fields.get("name", ""), " ".join(fields.get("description", "").split())
    if not NAME.match(name):
        raise SkillProblem("the skill's name must be lower-case letters, digits, '-' or '_'")
    if not description:
        raise SkillProblem("the skill has no description")
    body = "\n".join(lines[end + 1 :]).strip()
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + f"\n[... cut at {MAX_BODY_CHARS} characters]"
    return Skill(name=name, description=description[:MAX_DESCRIPTION_CHARS], body=body)


class SkillBook:
    """The skills of one folder, read afresh on each use (an edit counts at once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _read(self, root: int, entry: str) -> str:
        """``<entry>/SKILL.md`` below the open folder ``root``, neither followed if a link."""
        try:
            sub = os.open(entry, _DIR, dir_fd=root)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise SkillProblem(f"skill folder {entry!r} is a link or not a folder") from None
            raise SkillProblem(f"skill {entry!r} cannot be opened") from None
        try:
            try:
                fd = os.open(SKILL_FILE, _FILE, dir_fd=sub)
            except OSError:
                raise SkillProblem(f"skill {entry!r} has no readable {SKILL_FILE}") from None
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise SkillProblem(f"{SKILL_FILE} of {entry!r} is not a regular file")
                data = f.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(sub)
        if len(data) > MAX_FILE_BYTES:
            raise SkillProblem(f"{SKILL_FILE} of {entry!r} is over {MAX_FILE_BYTES} bytes")
        return data.decode("utf-8", errors="replace")

    def _skills(self, wanted: str | None = None) -> list[Skill]:
        try:
            root = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return []  # no skills folder: no skills
        found: list[Skill] = []
        try:
            entries = sorted(os.listdir(root))
            for entry in entries:
                if len(found) >= MAX_SKILLS:
                    log.warning(
                        "skills: more than %d in %s; the rest are left out", MAX_SKILLS, self.folder
                    )
                    break
                if entry.startswith(".") or (wanted is not None and entry != wanted):
                    continue
                try:
                    skill = parse(self._read(root, entry))
                except SkillProblem as exc:
                    log.warning("skills: %s is left out: %s", self.folder / entry, exc)
                    continue
                if skill.name != entry:
                    log.warning(
                        "skills: %s is named %r; a skill's name is its folder's",
                        self.folder / entry,
                        skill.name,
                    )
                    continue
                found.append(skill)
        finally:
            with contextlib.suppress(OSError):
                os.close(root)
        return found

    def listing(self) -> list[tuple[str, str]]:
        """(name, description) of every usable skill, by name."""
        return [(s.name, s.description) for s in self._skills()]

    def load(self, name: str) -> Skill:
        """The skill ``name``; ``SkillProblem`` when there is no usable skill by that name."""
        if not NAME.match(name):
            raise SkillProblem("a skill name is lower-case letters, digits, '-' or '_'")
        found = self._skills(wanted=name)
        if not found:
            known = ", ".join(n for n, _ in self.listing()) or "none"
            raise SkillProblem(f"there is no skill {name!r}; the skills are: {known}")
        return found[0]
