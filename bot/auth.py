"""The one door: only the configured chat (and, if set, only listed users in it) gets in."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

log = logging.getLogger("bot.auth")


def is_authorised(update: Update, chat_id: int, allowed_users: Collection[int]) -> bool:
    """True for updates from the operator's chat (and user, when users are restricted).

    Anything without a chat (inline queries, polls) or without a user (channel posts)
    is refused: we cannot tell who sent it.
    """
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.id != chat_id:
        return False
    return not allowed_users or user.id in allowed_users


def make_guard(
    chat_id: int, allowed_users: Collection[int]
) -> Callable[[object, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
    """A handler callback for group -1 that stops every unauthorised update there."""
    allowed = frozenset(allowed_users)

    async def guard(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and is_authorised(update, chat_id, allowed):
            return
        who = "unknown"
        if isinstance(update, Update):
            user, chat = update.effective_user, update.effective_chat
            who = (
                f"user {user.id if user else '-'} (@{user.username if user else '-'}) "
                f"chat {chat.id if chat else '-'}"
            )
            kind = next((k for k in _KINDS if getattr(update, k, None) is not None), "update")
            log.warning("dropped %s from %s: not the authorised chat/user", kind, who)
        raise ApplicationHandlerStop

    return guard


_KINDS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "inline_query",
    "chosen_inline_result",
    "my_chat_member",
    "chat_member",
)
