"""WhatsApp: one channel type, two ways in, chosen per account by ``mode``.

* ``cloud``: the Business Cloud API (``moltbot.channels.whatsapp_cloud``): Meta's webhooks at
  the gateway, the Graph API out.
* ``web``: moltbot linked as a device of the user's own WhatsApp
  (``moltbot.channels.whatsapp_web``), through neonize behind a narrow port.
"""

from __future__ import annotations

from pathlib import Path

from moltbot.channels.accounts import SecretResolver
from moltbot.channels.base import ChannelAdapter, CursorStore
from moltbot.channels.whatsapp_port import WaClient
from moltbot.config.schema import WhatsAppAccount
from moltbot.errors import ConfigError, VaultError


def make_whatsapp(
    acct: WhatsAppAccount, at: str, secret: SecretResolver, *, cursor_store: CursorStore | None
) -> ChannelAdapter:
    """The adapter of one configured WhatsApp account (``at``: its JSON path for errors)."""
    if acct.mode == "cloud":
        from moltbot.channels.whatsapp_cloud import WhatsAppCloudAdapter

        assert acct.phone_number_id and acct.access_token and acct.app_secret  # the loader
        assert acct.verify_token  # checked these (moltbot.config.loader._check_whatsapp)
        return WhatsAppCloudAdapter(
            account=acct.account,
            phone_number_id=acct.phone_number_id,
            access_token=secret(acct.access_token, f"{at}.access_token"),
            app_secret=secret(acct.app_secret, f"{at}.app_secret"),
            verify_token=secret(acct.verify_token, f"{at}.verify_token"),
            api_base=acct.api_base,
            api_version=acct.api_version,
        )
    from moltbot.channels.whatsapp_neonize import NeonizeClient
    from moltbot.channels.whatsapp_session import SessionFile, decode_key, key_name
    from moltbot.channels.whatsapp_web import WhatsAppWebAdapter

    # the session key is made by `moltbot channels login`; missing: the account is parked
    try:
        key = decode_key(secret(f"secret:{key_name(acct.account)}", f"{at}.mode"))
    except ConfigError:
        raise ConfigError(
            f"{at}.mode",
            f"WhatsApp account {acct.account!r} is not linked yet",
            f"link it: moltbot channels login whatsapp:{acct.account}",
        ) from None
    client: WaClient
    if acct.bridge_socket:
        from moltbot.channels.whatsapp_bridge import BridgeClient

        client = BridgeClient(Path(acct.bridge_socket).expanduser())
    else:
        client = NeonizeClient(acct.account)
    return WhatsAppWebAdapter(
        account=acct.account,
        client=client,
        session=SessionFile(acct.account, key),
        mention_names=acct.mention_names,
    )


def check_linked(acct: WhatsAppAccount, secret: SecretResolver) -> tuple[bool, str, str]:
    """Web mode, for ``moltbot doctor``, without connecting (a second connection of the same
    device would knock the running one off): (ok, detail, fix)."""
    from moltbot.channels.whatsapp_session import SessionFile, decode_key, key_name

    fix = f"moltbot channels login whatsapp:{acct.account}"
    try:
        key = decode_key(secret(f"secret:{key_name(acct.account)}", "$"))
    except (ConfigError, VaultError):
        return False, "not linked (no session key in the vault)", fix
    session = SessionFile(acct.account, key)
    if not session.exists():
        return False, f"not linked (no session at {session.path})", fix
    try:
        session.verify()
    except VaultError as exc:
        return False, exc.user_message, exc.hint
    return True, f"linked; session kept encrypted at {session.path}", ""
