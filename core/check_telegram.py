"""`check`, the Telegram end: the token, the chat, the allowed users. Plain Bot API calls.

httpx, not PTB: core never imports telegram, and two read-only calls need no Application.
The token is part of every URL, so it is taken out of any text that could hold it.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.check_result import Check
from core.logs import escape_controls
from core.settings import Settings, shown_url

REQUEST_TIMEOUT_SECONDS = 10.0


class BotApiError(Exception):
    """The Bot API said no (`ok: false`), or could not be asked."""

    def __init__(self, status: int | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


async def check_telegram(settings: Settings) -> list[Check]:
    """getMe, then getChat on TELEGRAM_CHAT_ID, then the allowed user ids. Nothing is sent."""
    if settings.telegram_token is None:
        return []
    token = settings.telegram_token.get_secret_value()
    base = f"{settings.telegram_api_base_url}{token}"
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as client:
        try:
            me = await _call(client, f"{base}/getMe", {}, token)
        except BotApiError as exc:
            return [_token_failure(settings, exc)]
        bot = f"@{me.get('username', '?')}"
        checks = [Check("Telegram", True, f"token accepted: the bot is {bot}")]
        try:
            chat_id = {"chat_id": settings.telegram_chat_id}
            chat = await _call(client, f"{base}/getChat", chat_id, token)
        except BotApiError as exc:
            checks.append(_chat_failure(settings, bot, exc))
        else:
            checks.append(Check("Telegram chat", True, f"{bot} is in {_chat_name(chat)}"))
    users = settings.telegram_allowed_user_ids
    checks.append(check_allowed_users(users, settings.telegram_chat_id))
    return checks


def check_allowed_users(user_ids: list[int], chat_id: int | None) -> Check:
    """Who may command the bot in the chat; a chat id in the list is a mistake. Pure."""
    if not user_ids:
        return Check(
            "Telegram users",
            True,
            f"everyone in chat {chat_id} may command the bot (TELEGRAM_ALLOWED_USER_IDS is empty)",
        )
    not_users = [uid for uid in user_ids if uid <= 0]
    if not_users:
        return Check(
            "Telegram users",
            True,
            f"TELEGRAM_ALLOWED_USER_IDS holds {', '.join(map(str, not_users))}: a chat id, "
            "not a user's (user ids are positive), so it lets nobody in",
            "put the people's own user ids there",
            warning=True,
        )
    return Check(
        "Telegram users",
        True,
        f"only user id(s) {', '.join(map(str, user_ids))} may command the bot in chat {chat_id}",
    )


async def _call(
    client: httpx.AsyncClient, url: str, params: dict[str, Any], token: str
) -> dict[str, Any]:
    try:
        response = await client.post(url, json=params)
    except httpx.HTTPError as exc:
        # The message may quote the URL, and the URL holds the token.
        reason = (str(exc) or type(exc).__name__).replace(token, "***")
        raise BotApiError(None, reason) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        status = response.status_code
        raise BotApiError(status, f"HTTP {status}, not a Bot API answer")
    result = body.get("result")
    if body.get("ok") is True and isinstance(result, dict):
        return result
    description = str(body.get("description") or f"HTTP {response.status_code}")
    raise BotApiError(response.status_code, description.replace(token, "***"))


def _token_failure(settings: Settings, exc: BotApiError) -> Check:
    if exc.status is None:
        return Check(
            "Telegram",
            False,
            f"cannot reach the Bot API at {shown_url(settings.telegram_api_base_url)}: "
            f"{exc.description}",
            "check the network (or TELEGRAM_API_BASE_URL)",
        )
    if exc.status in (401, 404):  # 404: a token so malformed Telegram finds no bot route
        return Check(
            "Telegram",
            False,
            f"token rejected ({exc.status} {exc.description})",
            "copy the token @BotFather gave into TELEGRAM_TOKEN (or /revoke and take the new one)",
        )
    return Check("Telegram", False, f"getMe answered {exc.status}: {exc.description}")


def _chat_failure(settings: Settings, bot: str, exc: BotApiError) -> Check:
    chat = settings.telegram_chat_id
    detail = f"{bot} cannot use chat {chat}: {exc.description}"
    if exc.status == 403:  # kicked from the group, or blocked by the user
        hint = f"add {bot} to that chat again (or unblock it)"
        return Check("Telegram chat", False, detail, hint)
    if exc.status == 400:
        return Check(
            "Telegram chat",
            False,
            detail,
            f"add {bot} to the group, or send it /start from the account of a private chat; "
            "check TELEGRAM_CHAT_ID (group ids are negative)",
        )
    return Check("Telegram chat", False, detail)


def _chat_name(chat: dict[str, Any]) -> str:
    kind = str(chat.get("type", "chat"))
    # A title is anyone's text: one line, no terminal escapes.
    name = escape_controls(str(chat.get("title") or chat.get("first_name") or ""))
    return f'{kind} chat {chat.get("id")} "{name}"' if name else f"{kind} chat {chat.get('id')}"
