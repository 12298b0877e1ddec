"""Command and button handlers: parse, call the engine, render. Nothing else."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from bot import render
from bot.arguments import (
    ArgumentError,
    describe_duration,
    parse_channel,
    parse_count,
    parse_duration,
    parse_on_off,
    parse_report_period,
)
from core.chart import render_chart_async
from core.engine import Engine
from core.lndg import LndgError
from core.models import Channel, Pair, chan_id_to_short_id
from core.pairing import ChannelLookupError, resolve_channel
from core.report import format_summary
from core.report_csv import read_days
from core.reporting import Reporter
from core.settings import masked

log = logging.getLogger("bot.handlers")

Context = ContextTypes.DEFAULT_TYPE


def day_start(now: float, zone: dt.tzinfo) -> float:
    """Midnight of `now`'s local day, as a Unix time."""
    local = dt.datetime.fromtimestamp(now, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


@dataclass
class Commands:
    """The chat's commands, bound to one engine."""

    engine: Engine
    reporter: Reporter | None = None
    next_cycle: Callable[[], float | None] = lambda: None
    _pairs: tuple[list[Channel], Sequence[Pair]] = field(default_factory=lambda: ([], []))

    @property
    def zone(self) -> dt.tzinfo:
        return self.engine.settings.zone

    def mode(self) -> str:
        mode = "dry run" if self.engine.dry_run else "live"
        until = self.engine.store.paused_until()
        if until is not None and until > time.time():
            mode += ", paused" + (
                "" if until == float("inf") else f" until {render.clock(until, self.zone)}"
            )
        return mode

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
        app.add_handler(CallbackQueryHandler(self.page, pattern=r"^pairs:\d+$"))
        app.add_handler(CallbackQueryHandler(self.confirmed, pattern=r"^ok:"))
        app.add_handler(CallbackQueryHandler(self.cancelled, pattern=r"^no$"))

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

    async def ask(self, update: Update, action: str, argument: str = "") -> None:
        """Switches confirm with a button before they change anything."""
        data = f"ok:{action}" + (f":{argument}" if argument else "")
        shown = describe_duration(int(argument)) if action == "pause" and argument else argument
        question = render.confirm_question(
            action if action != "dryrun" else f"dryrun:{argument}", shown
        )
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("Confirm", callback_data=data),
                    InlineKeyboardButton("Cancel", callback_data="no"),
                ]
            ]
        )
        await self.reply(update, question, markup)

    # --- commands -----------------------------------------------------------------------

    async def help(self, update: Update, context: Context) -> None:
        await self.reply(update, render.help_text(self.engine.settings.dry_run))

    async def status(self, update: Update, context: Context) -> None:
        now = time.time()
        store = self.engine.store
        since = day_start(now, self.zone)
        last = store.get_value("last_cycle")
        start, _, end = (last or "").partition(":")
        last_cycle = (float(start), float(end)) if last else None
        text = render.status(
            mode=self.mode(),
            now=now,
            zone=self.zone,
            last_cycle=last_cycle,
            next_cycle=self.next_cycle(),
            cycle_running=self.engine.cycle_running,
            active=list(self.engine.status.active.values()),
            today=store.totals(since=since),
            outcomes=store.outcome_counts(since=since),
            lndg_ok=self.engine.status.lndg_ok,
            lndg_error=self.engine.status.lndg_error,
        )
        await self.reply(update, text)

    async def _fetch_pairs(self, update: Update) -> tuple[list[Channel], Sequence[Pair]] | None:
        try:
            self._pairs = await self.engine.pairs()
        except Exception as exc:
            await self.reply(update, render.alert(f"LNDg: {exc}"))
            return None
        return self._pairs

    @staticmethod
    def _page_buttons(page: int, count: int) -> InlineKeyboardMarkup | None:
        total = render.pages(count)
        if total <= 1:
            return None
        row = []
        if page > 0:
            row.append(InlineKeyboardButton("◀ prev", callback_data=f"pairs:{page - 1}"))
        if page < total - 1:
            row.append(InlineKeyboardButton("next ▶", callback_data=f"pairs:{page + 1}"))
        return InlineKeyboardMarkup([row])

    async def pairs(self, update: Update, context: Context) -> None:
        fetched = await self._fetch_pairs(update)
        if fetched is None:
            return
        channels, pairs = fetched
        text = render.pairs_page(pairs, 0, len(channels))
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
            render.pairs_page(pairs, page, len(channels)),
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
            if not on and self.engine.settings.dry_run:
                await self.reply(update, "DRY_RUN=true is set in the environment; change it there.")
                return
            await self.ask(update, "dryrun", "on" if on else "off")
            return
        fetched = await self._fetch_pairs(update)
        if fetched is None:
            return
        channels, pairs = fetched
        planned = self.engine.plan(channels)
        await self.reply(update, render.dry_run_plan(planned, len(pairs), len(channels)))

    async def run(self, update: Update, context: Context) -> None:
        if self.engine.cycle_running:
            await self.reply(update, "A cycle is running now; /status shows its runs.")
            return
        await self.ask(update, "run")

    async def pause(self, update: Update, context: Context) -> None:
        args = context.args or []
        try:
            seconds = parse_duration(" ".join(args)) if args else 0
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        await self.ask(update, "pause", str(seconds) if seconds else "")

    async def resume(self, update: Update, context: Context) -> None:
        if self.engine.store.paused_until() is None:
            await self.reply(update, f"Not paused ({self.mode()}).")
            return
        await self.ask(update, "resume")

    async def exclude(self, update: Update, context: Context) -> None:
        try:
            query = parse_channel(context.args or [], "exclude")
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        try:
            channels = await self.engine.channels()
        except Exception as exc:
            await self.reply(update, render.alert(f"LNDg: {exc}"))
            return
        try:
            channel = resolve_channel(query, channels)
        except ChannelLookupError as exc:
            await self.reply(update, render.bad_argument(str(exc), "/exclude 800000x1234x1"))
            return
        added = self.engine.store.exclude(channel.chan_id, channel.alias, added_by="chat")
        await self.reply(update, render.excluded(channel, added))

    async def include(self, update: Update, context: Context) -> None:
        try:
            query = parse_channel(context.args or [], "include")
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        # Resolve among the exclusions themselves: an excluded channel may be closed now.
        rows = self.engine.store.exclusions()
        folded = query.casefold()
        matches = [
            e
            for e in rows
            if query in (e.chan_id, chan_id_to_short_id(e.chan_id)) or e.label.casefold() == folded
        ]
        if len(matches) != 1:
            problem = (
                f"{query!r} matches no exclusion"
                if not matches
                else f"{query!r} matches {len(matches)} exclusions; use the chan_id"
            )
            await self.reply(update, render.bad_argument(problem, "/include 800000x1234x1"))
            return
        found = matches[0]
        removed = self.engine.store.include(found.chan_id)
        await self.reply(update, render.included(found.label, found.chan_id, removed))

    async def exclusions(self, update: Update, context: Context) -> None:
        await self.reply(update, render.exclusions(self.engine.store.exclusions()))

    async def history(self, update: Update, context: Context) -> None:
        try:
            count = parse_count(context.args or [])
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        await self.reply(
            update, render.history(self.engine.store.last_rebalances(count), self.zone)
        )

    async def config(self, update: Update, context: Context) -> None:
        await self.reply(update, render.config(masked(self.engine.settings)))

    async def report(self, update: Update, context: Context) -> None:
        today = dt.datetime.now(self.zone).date()
        try:
            last_day, days = parse_report_period(context.args or [], today)
        except ArgumentError as exc:
            await self.reply(update, render.bad_argument(exc.problem, exc.example))
            return
        if self.reporter is None:
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
        rows = read_days(self.reporter.csv_path)
        if rows and update.effective_message is not None:
            chart = await render_chart_async(rows, end=today)
            await update.effective_message.reply_photo(
                chart, caption="Node rebalancing, last 30 days"
            )

    # --- buttons ------------------------------------------------------------------------

    async def confirmed(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        assert query.data is not None
        await query.answer()
        _, action, *rest = query.data.split(":")
        argument = rest[0] if rest else ""
        store = self.engine.store
        if action == "dryrun":
            if argument == "off" and self.engine.settings.dry_run:
                text = "DRY_RUN=true is set in the environment; change it there."
            else:
                store.dry_run = argument == "on"
                text = f"Dry run is {'ON' if store.dry_run else 'OFF'}. Mode: {self.mode()}."
        elif action == "pause":
            store.pause(time.time() + int(argument) if argument else float("inf"))
            text = f"Paused. Mode: {self.mode()}. /resume to start runs again."
        elif action == "resume":
            store.resume()
            text = f"Resumed. Mode: {self.mode()}."
        elif action == "run":
            if self.engine.cycle_running:
                text = "A cycle is already running."
            else:
                context.application.create_task(
                    self.engine.cycle(ignore_pause=True), name="manual cycle"
                )
                text = "Cycle started; rebalances will appear here as they land."
        else:
            text = "Unknown action."
        log.info("chat: %s %s confirmed", action, argument)
        await query.edit_message_text(text)

    async def cancelled(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text("Cancelled; nothing changed.")
