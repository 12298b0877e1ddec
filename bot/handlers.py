"""Command and button handlers: parse, call the control surface (core.control), render.

Switches ask before they act. The question's buttons carry only a short random token; what
to do, its checked argument, who asked and when stay here in memory (`Confirmations`), so a
button's data can name nothing to do, and a restart or ten minutes void every question.
Every confirmable action is one entry of `CONFIRMABLE`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import render
from bot.arguments import (
    ArgumentError,
    describe_duration,
    parse_channel,
    parse_count,
    parse_duration,
    parse_on_off,
    parse_pnl_days,
    parse_report_period,
)
from core.channel_ref import ChannelLookupError
from core.control import DRY_RUN_LOCKED, Control, Refused
from core.lndg import LndgError
from core.models import Channel, Pair
from core.pnl import Pnl
from core.report_delivery import Reporter
from core.report_figures import format_summary
from core.settings import Settings, masked

log = logging.getLogger("bot.handlers")

Context = ContextTypes.DEFAULT_TYPE

CONFIRM_SECONDS = 600.0
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?")


def page_buttons(kind: str, page: int, total: int) -> InlineKeyboardMarkup | None:
    """◀ prev / next ▶ under page `page` of `total` of a paged list (`kind:N` callbacks)."""
    if total <= 1:
        return None
    row = []
    if page > 0:
        row.append(InlineKeyboardButton("◀ prev", callback_data=f"{kind}:{page - 1}"))
    if page < total - 1:
        row.append(InlineKeyboardButton("next ▶", callback_data=f"{kind}:{page + 1}"))
    return InlineKeyboardMarkup([row])


@dataclass(frozen=True, slots=True)
class Pending:
    """A question waiting for its Confirm button: what, with which checked argument, who, when."""

    action: str
    argument: Any
    user_id: int
    asked_at: float


class Confirmations:
    """Pending questions by short random token; in memory only, so a restart voids them."""

    def __init__(
        self, ttl: float = CONFIRM_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._pending: dict[str, Pending] = {}

    def ask(self, action: str, argument: Any, user_id: int) -> str:
        """Remember a question; returns its token (fits callback data with room to spare)."""
        self._forget_expired()
        token = secrets.token_urlsafe(9)
        self._pending[token] = Pending(action, argument, user_id, self.clock())
        return token

    def take(self, token: str, user_id: int) -> Pending | None:
        """The question of `token`, once; None if unknown, expired or asked by someone else."""
        self._forget_expired()
        pending = self._pending.get(token)
        if pending is None or pending.user_id != user_id:
            return None
        del self._pending[token]
        return pending

    def __contains__(self, token: object) -> bool:
        self._forget_expired()
        return token in self._pending

    def __len__(self) -> int:
        self._forget_expired()
        return len(self._pending)

    def _forget_expired(self) -> None:
        now = self.clock()
        for token in [t for t, p in self._pending.items() if now - p.asked_at >= self.ttl]:
            del self._pending[token]


def command_name(update: Update) -> str:
    """The command an update carried (`/history`), for a reply about it."""
    if update.callback_query is not None:
        return "that button"
    text = update.effective_message.text if update.effective_message else None
    match = _COMMAND.match(text or "")
    return f"/{match.group(1)}" if match else "that"


@dataclass
class Commands:
    """The chat's commands, over one control surface."""

    control: Control
    reporter: Reporter | None
    settings: Settings
    confirmations: Confirmations = field(default_factory=Confirmations)
    # The newest pair list, for the page buttons. Updates run concurrently: a slow fetch
    # that ends after a newer one must not replace it (`_pairs_asked` is when it began).
    _pairs: tuple[list[Channel], Sequence[Pair]] = field(default_factory=lambda: ([], []))
    _pairs_asked: float = 0.0
    _pnl: Pnl | None = None  # the newest /pnl answer, for its page buttons

    @property
    def zone(self) -> dt.tzinfo:
        return self.settings.zone

    def mode(self) -> str:
        return render.mode(self.control.mode(), time.time(), self.zone)

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        for name in ("start", "help"):
            app.add_handler(CommandHandler(name, self.help))
        app.add_handler(CommandHandler("status", self.status))
        app.add_handler(CommandHandler("pairs", self.pairs))
        app.add_handler(CommandHandler("dryrun", self.dryrun))
        app.add_handler(CommandHandler("run", self.run))
        app.add_handler(CommandHandler("pause", self.pause))
        app.add_handler(CommandHandler("resume", self.resume))
        app.add_handler(CommandHandler("exclude", self.exclude))
        app.add_handler(CommandHandler("include", self.include))
        app.add_handler(CommandHandler("exclusions", self.exclusions))
        app.add_handler(CommandHandler("history", self.history))
        app.add_handler(CommandHandler("config", self.config))
        app.add_handler(CommandHandler("report", self.report))
        app.add_handler(CommandHandler("channel", self.channel))
        app.add_handler(CommandHandler("pnl", self.pnl))
        # After the known commands: the first matching handler of a group wins.
        app.add_handler(MessageHandler(filters.COMMAND, self.unknown))
        app.add_handler(CallbackQueryHandler(self.page, pattern=r"^pairs:[0-9]{1,6}$"))
        app.add_handler(CallbackQueryHandler(self.pnl_page, pattern=r"^pnl:[0-9]{1,6}$"))
        app.add_handler(CallbackQueryHandler(self.asked, pattern=r"^ask:"))
        app.add_handler(CallbackQueryHandler(self.confirmed, pattern=r"^ok:"))
        app.add_handler(CallbackQueryHandler(self.cancelled, pattern=r"^no(:|$)"))
        app.add_handler(CallbackQueryHandler(self.void))  # any other (old, forged) button
        app.add_error_handler(self.failed)

    # --- replies ------------------------------------------------------------------------

    @staticmethod
    async def reply(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        if update.effective_message is not None:
            await update.effective_message.reply_text(
                render.fit(text),
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                disable_web_page_preview=True,
            )

    async def ask(self, update: Update, action: str, argument: Any = None) -> None:
        """Switches confirm with a button before they change anything."""
        user = update.effective_user
        assert user is not None  # the guard lets no update without a user through
        token = self.confirmations.ask(action, argument, user.id)
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(render.CONFIRM, callback_data=f"ok:{token}"),
                    InlineKeyboardButton(render.CANCEL, callback_data=f"no:{token}"),
                ]
            ]
        )
        await self.reply(update, CONFIRMABLE[action].question(argument), markup)

    # --- commands -----------------------------------------------------------------------

    async def help(self, update: Update, context: Context) -> None:
        await self.reply(update, render.help_text(self.control.dry_run_locked))

    async def status(self, update: Update, context: Context) -> None:
        await self.reply(update, render.status(self.control.status(), self.zone))

    async def _fetch_pairs(self, update: Update) -> tuple[list[Channel], Sequence[Pair]] | None:
        asked = time.monotonic()
        try:
            fetched = await self.control.pairs()
        except Exception as exc:
            await self.reply(update, render.alert(f"LNDg: {exc}"))
            return None
        if asked >= self._pairs_asked:
            self._pairs, self._pairs_asked = fetched, asked
        return fetched

    @staticmethod
    def _page_buttons(page: int, count: int) -> InlineKeyboardMarkup | None:
        return page_buttons("pairs", page, render.pages(count))

    async def pairs(self, update: Update, context: Context) -> None:
        fetched = await self._fetch_pairs(update)
        if fetched is None:
            return
        channels, pairs = fetched
        skipped = self.control.skipped_targets(channels)
        text = render.pairs_page(pairs, 0, len(channels), skipped=skipped)
        await self.reply(update, text, self._page_buttons(0, len(pairs)))

    async def page(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        assert query.data is not None
        await query.answer()
        page = int(query.data.split(":")[1])
        channels, pairs = self._pairs
        page = min(page, render.pages(len(pairs)) - 1)
        await query.edit_message_text(
            render.pairs_page(
                pairs, page, len(channels), skipped=self.control.skipped_targets(channels)
            ),
            parse_mode=ParseMode.HTML,
            reply_markup=self._page_buttons(page, len(pairs)),
        )

    async def dryrun(self, update: Update, context: Context) -> None:
        args = context.args or []
        if args:
            try:
                on = parse_on_off(args[0])
            except ArgumentError as exc:
                await self.reply(update, render.bad_argument(exc.problem, exc.example))
                return
            if not on and self.control.dry_run_locked:
                await self.reply(update, render.refused(DRY_RUN_LOCKED))
                return
            await self.ask(update, "dryrun", on)
            return
        fetched = await self._fetch_pairs(update)
        if fetched is None:
            return
        channels, pairs = fetched
        planned = self.control.plan(channels)
        await self.reply(update, render.dry_run_plan(planned, len(pairs), len(channels)))

    async def run(self, update: Update, context: Context) -> None:
        if self.control.cycle_running:
            await self.reply(update, render.CYCLE_RUNNING)
            return
        await self.ask(update, "run")

    async def pause(self, update: Update, context: Context) -> None:
        args = context.args or []
        try:
            seconds = parse_duration(" ".join(args)) if args else 0
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        await self.ask(update, "pause", seconds or None)

    async def resume(self, update: Update, context: Context) -> None:
        if not self.control.paused:
            await self.reply(update, render.not_paused(self.control.mode(), time.time(), self.zone))
            return
        await self.ask(update, "resume")

    async def exclude(self, update: Update, context: Context) -> None:
        try:
            query = parse_channel(context.args or [], "exclude")
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        try:
            channel, added = await self.control.exclude(query)
        except ChannelLookupError as exc:
            await self.reply(update, render.bad_argument(str(exc), "/exclude 800000x1234x1"))
            return
        except LndgError as exc:
            await self.reply(update, render.alert(f"LNDg: {exc}"))
            return
        await self.reply(update, render.excluded(channel, added))

    async def include(self, update: Update, context: Context) -> None:
        try:
            query = parse_channel(context.args or [], "include")
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        try:
            found, removed = self.control.include(query)
        except ChannelLookupError as exc:
            await self.reply(update, render.bad_argument(str(exc), "/include 800000x1234x1"))
            return
        await self.reply(update, render.included(found.label, found.chan_id, removed))

    async def exclusions(self, update: Update, context: Context) -> None:
        await self.reply(update, render.exclusions(self.control.exclusions()))

    async def history(self, update: Update, context: Context) -> None:
        try:
            count = parse_count(context.args or [])
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        await self.reply(update, render.history(self.control.last_rebalances(count), self.zone))

    async def config(self, update: Update, context: Context) -> None:
        await self.reply(update, render.config(masked(self.settings)))

    async def report(self, update: Update, context: Context) -> None:
        today = dt.datetime.now(self.zone).date()
        try:
            last_day, days = parse_report_period(context.args or [], today)
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        if self.reporter is None:  # a face without the daily report (tests): say so
            await self.reply(update, render.NO_REPORTS)
            return
        try:
            if days == 1 and last_day < today:
                summary = await self.reporter.build(last_day)  # a finished day: CSV row too
            else:
                summary = await self.reporter.build_range(last_day, days)
        except LndgError as exc:
            await self.reply(update, render.alert(f"report needs LNDg: {exc}"))
            return
        await self.reply(update, render.report(format_summary(summary)))
        if update.effective_message is not None:
            chart = await self.reporter.chart(last_day, days)
            await update.effective_message.reply_photo(chart.png, caption=chart.caption)

    async def channel(self, update: Update, context: Context) -> None:
        try:
            query = parse_channel(context.args or [], "channel")
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        try:
            card = await self.control.channel(query)
        except ChannelLookupError as exc:
            await self.reply(update, render.bad_argument(str(exc), "/channel 800000x1234x1"))
            return
        except Refused as exc:
            await self.reply(update, render.refused(str(exc)))
            return
        except LndgError as exc:
            await self.reply(update, render.money_unavailable(str(exc)))
            return
        user = update.effective_user
        assert user is not None  # the guard lets no update without a user through
        c = card.channel
        action = "include" if card.excluded else "exclude"
        token = self.confirmations.ask(action, (c.chan_id, c.label), user.id)
        label = render.INCLUDE if action == "include" else render.EXCLUDE
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"ask:{token}")]])
        await self.reply(update, render.channel_card(card, self.zone), markup)

    async def pnl(self, update: Update, context: Context) -> None:
        try:
            days = parse_pnl_days(context.args or [])
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        try:
            found = await self.control.pnl(days)
        except Refused as exc:
            await self.reply(update, render.refused(str(exc)))
            return
        except LndgError as exc:
            await self.reply(update, render.money_unavailable(str(exc)))
            return
        self._pnl = found
        await self.reply(update, render.pnl_page(found, 0), self._pnl_buttons(found, 0))

    @staticmethod
    def _pnl_buttons(found: Pnl, page: int) -> InlineKeyboardMarkup | None:
        return page_buttons("pnl", page, render.pnl_pages(len(found.channels)))

    async def pnl_page(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        assert query.data is not None
        found = self._pnl
        if found is None:  # a restart forgot the list: its buttons are void
            await self._void(query)
            return
        await query.answer()
        page = min(int(query.data.split(":")[1]), render.pnl_pages(len(found.channels)) - 1)
        await query.edit_message_text(
            render.pnl_page(found, page),
            parse_mode=ParseMode.HTML,
            reply_markup=self._pnl_buttons(found, page),
        )

    async def unknown(self, update: Update, context: Context) -> None:
        text = update.effective_message.text if update.effective_message else None
        match = _COMMAND.match(text or "")
        if match is None:
            return
        mention = match.group(2)
        if mention and mention.lower() != (context.bot.username or "").lower():
            return  # addressed to another bot in the group
        await self.reply(update, render.unknown_command(f"/{match.group(1)}"))

    # --- buttons ------------------------------------------------------------------------

    @staticmethod
    def _token(query: CallbackQuery) -> str:
        return (query.data or "").partition(":")[2]

    def _take(self, query: CallbackQuery) -> Pending | None:
        return self.confirmations.take(self._token(query), query.from_user.id)

    async def confirmed(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        pending = self._take(query)
        if pending is None:
            await self._void(query)
            return
        await query.answer()
        text = await CONFIRMABLE[pending.action].perform(self, pending.argument, context)
        log.info(
            "chat: %s %s confirmed by user %d",
            pending.action,
            "" if pending.argument is None else pending.argument,
            pending.user_id,
        )
        await query.edit_message_text(text)

    async def asked(self, update: Update, context: Context) -> None:
        """A card's button (exclude/include): ask the question, as the command would."""
        query = update.callback_query
        assert query is not None
        pending = self._take(query)
        if pending is None:
            await self._void(query)
            return
        await query.answer()
        await self.ask(update, pending.action, pending.argument)

    async def cancelled(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        if self._take(query) is None:
            await self._void(query)
            return
        await query.answer()
        await query.edit_message_text(render.CANCELLED)

    async def void(self, update: Update, context: Context) -> None:
        assert update.callback_query is not None
        await self._void(update.callback_query)

    async def _void(self, query: CallbackQuery) -> None:
        """An unknown, expired or forged button (or another user's question): say so only."""
        await query.answer(render.CONFIRMATION_VOID, show_alert=True)
        markup = getattr(query.message, "reply_markup", None)
        shown = [b.callback_data for row in (markup.inline_keyboard if markup else ()) for b in row]
        if query.data in shown and self._token(query) not in self.confirmations:
            # the question's own button, expired: the question cannot be answered any more
            await query.edit_message_text(render.CONFIRMATION_VOID)

    # --- confirmed actions (see CONFIRMABLE) ----------------------------------------------

    async def switch_dry_run(self, on: bool, context: Context) -> str:
        try:
            switches = self.control.set_dry_run(on)
        except Refused as exc:
            return render.refused(str(exc))
        return render.dry_run_switched(switches, time.time(), self.zone)

    async def pause_runs(self, seconds: int | None, context: Context) -> str:
        return render.paused(self.control.pause(seconds), time.time(), self.zone)

    async def resume_runs(self, _: None, context: Context) -> str:
        try:
            switches = self.control.resume()
        except Refused:
            return render.not_paused(self.control.mode(), time.time(), self.zone)
        return render.resumed(switches, time.time(), self.zone)

    async def run_now(self, _: None, context: Context) -> str:
        try:
            self.control.run_now()
        except Refused as exc:
            return render.refused(str(exc))
        return render.CYCLE_STARTED

    async def exclude_channel(self, channel: tuple[str, str], context: Context) -> str:
        chan_id, _label = channel
        try:
            found, added = await self.control.exclude(chan_id)
        except ChannelLookupError as exc:
            return f"Not excluded: {exc}."
        except LndgError as exc:
            return f"Not excluded, LNDg could not be read: {exc}"
        return render.plain(render.excluded(found, added))

    async def include_channel(self, channel: tuple[str, str], context: Context) -> str:
        chan_id, label = channel
        try:
            found, removed = self.control.include(chan_id)
        except ChannelLookupError:
            return render.plain(render.included(label, chan_id, False))
        return render.plain(render.included(found.label, found.chan_id, removed))

    # --- failures -----------------------------------------------------------------------

    async def failed(self, update: object, context: Context) -> None:
        """PTB's error handler: the operator hears that a command failed; the log has why."""
        error = context.error
        if not isinstance(update, Update):  # a job or task: one line, like the other loops
            job = context.job.name if context.job else "a background task"
            log.error("%s raised an exception: %s: %s", job, type(error).__name__, error)
            return
        command = command_name(update)
        log.error("chat: %s failed", command, exc_info=error)
        if update.callback_query is not None:  # stop the button's spinner (if not done yet)
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer()
        try:
            await self.reply(update, render.command_failed(command, type(error).__name__))
        except TelegramError as exc:
            log.warning("could not tell the chat that %s failed: %s", command, exc)


@dataclass(frozen=True, slots=True)
class Confirmable:
    """A switch that asks first: its question, and what it does once confirmed."""

    question: Callable[[Any], str]
    perform: Callable[[Commands, Any, Context], Awaitable[str]]


# Every action a Confirm button can trigger; `Commands.ask` names one of these.
CONFIRMABLE: dict[str, Confirmable] = {
    "dryrun": Confirmable(render.confirm_dry_run, Commands.switch_dry_run),
    "pause": Confirmable(
        lambda seconds: render.confirm_pause(describe_duration(seconds) if seconds else None),
        Commands.pause_runs,
    ),
    "resume": Confirmable(lambda _: render.confirm_resume(), Commands.resume_runs),
    "run": Confirmable(lambda _: render.confirm_run(), Commands.run_now),
    # From a /channel card: the argument is (chan_id, label), checked when the card was made.
    "exclude": Confirmable(lambda c: render.confirm_exclude(c[1], c[0]), Commands.exclude_channel),
    "include": Confirmable(lambda c: render.confirm_include(c[1], c[0]), Commands.include_channel),
}
