"""aiogram imported through ``deferred_builds``: its models are not built at import, and each
one builds on first use to exactly what aiogram's own bulk build makes (same JSON schema, same
parsed values), forward references included. Each case runs in a fresh interpreter, as a
channel actor's process is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, warnings
warnings.simplefilter("ignore")  # pydantic: aiogram's Default(...) values have no JSON form
if sys.argv[1] == "deferred":
    import moltbot.channels.telegram  # imports aiogram through deferred_builds
import aiogram.methods as m
import aiogram.types as t

unbuilt = sorted(n for n in t.__all__ if getattr(getattr(t, n), "__pydantic_complete__", True)
                 is False)
update = t.Update.model_validate({
    "update_id": 7,
    "message": {
        "message_id": 3, "date": 0, "chat": {"id": 1, "type": "private"},
        "from": {"id": 2, "is_bot": False, "first_name": "Ann"},
        "reply_to_message": {"message_id": 2, "date": 0, "chat": {"id": 1, "type": "private"},
                             "text": "before"},
        "photo": [{"file_id": "f", "file_unique_id": "u", "width": 9, "height": 9}],
        "caption": "look",
    },
})
poll = m.SendPoll(chat_id=1, question="q?", options=["a", "b"])
print(json.dumps({
    "unbuilt": unbuilt,
    "update_built": t.Update.__pydantic_complete__,
    "update": update.model_dump(mode="json", exclude_none=True),
    "reply_type": type(update.message.reply_to_message).__name__,
    "poll": poll.model_dump(mode="json", include={"chat_id", "question", "options"}),
    "schemas": {c.__name__: c.model_json_schema()
                for c in (t.Update, t.Message, t.ChatFullInfo, m.SendMessage, m.SendPhoto)},
}, sort_keys=True))
"""


def _probe(mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(out.stdout))


def test_models_build_on_first_use_as_aiogram_builds_them() -> None:
    deferred, eager = _probe("deferred"), _probe("eager")
    assert eager["unbuilt"] == []  # aiogram alone builds every model at import
    assert len(deferred["unbuilt"]) > 200  # through deferred_builds: nearly none
    assert {"Update", "Poll"} <= set(deferred["unbuilt"])  # at import
    assert deferred["update_built"] is True  # once used
    assert deferred["reply_type"] == "Message"  # a forward reference, resolved
    for key in ("update", "update_built", "poll", "schemas"):
        assert deferred[key] == eager[key], key


WARM = """
import json
import moltbot.channels.telegram_warm as w
import aiogram.methods as m
import aiogram.types as t
print(json.dumps({
    "built": w.BUILT_AT_IMPORT,
    "update": t.Update.__pydantic_complete__,
    "send": m.SendMessage.__pydantic_complete__,
    "poll": t.Poll.__pydantic_complete__,
    "chat_full": t.ChatFullInfo.__pydantic_complete__,
}))
"""


def test_a_restart_preload_builds_the_models_of_every_message_and_only_those() -> None:
    """``telegram_warm`` (imported by a restarting channel actor's low-priority preload) builds
    what every message meets, and leaves the rest of aiogram's ~300 models unbuilt."""
    out = subprocess.run(
        [sys.executable, "-c", WARM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["built"] >= 1 and got["update"] and got["send"]
    assert not got["poll"] and not got["chat_full"]  # not met by a plain message: still deferred
