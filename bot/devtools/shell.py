"""`python -m bot shell`: talk to the bot in a terminal, through the same flow as Slack.

Cards are rendered as text with their buttons numbered; type a number to click one. Without
Cloudflare credentials it runs on the sandbox, without REDIS_URL on the in-process store. Works with
piped input, so it is tested the same way a person would use it.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, TextIO

from bot.app.schedule import Announcement
from bot.cloudflare.transport import DEFAULT_BASE_URL
from bot.config import Settings
from bot.devtools import demo_idle
from bot.devtools.demo_account import DEMO_USERS
from bot.domain.parse import unescape
from bot.domain.schedule_outcomes import Fired, Unscheduled
from bot.logs import redact_url
from bot.runtime import Runtime, build_runtime
from bot.slack import blocks, replies, schedule_blocks

SHELL_USER = "U0SHELL"
SHELL_CHANNEL = "C0SHELL"
_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^<>]*)?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^<>]*)?>")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_TYPED_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^<>]*)?>")


_WHERE: dict[replies.Placement, str] = {
    "ephemeral": "only you",
    "in_channel": "in channel",
    "replace": "card",
    "replace_in_channel": "in channel",
}


class ShellDirectory:
    """Demo people for mentions: <@U0ALICE> is alice@example.com, and so on."""

    def __init__(self) -> None:
        self.emails = {f"U0{email.split('@')[0].upper()}": email for email, _ in DEMO_USERS}

    async def email_of(self, user_id: str) -> str | None:
        return self.emails.get(user_id)

    async def members_of(self, group_id: str) -> frozenset[str]:
        return frozenset()


def slack_escape(text: str) -> str:
    """What Slack does to typed text with should_escape; typed <@U…> stands for a real mention."""
    out, last = [], 0
    for m in _TYPED_MENTION.finditer(text):
        out.append(blocks.esc(text[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(blocks.esc(text[last:]))
    return "".join(out)


# Slack draws these shortcodes as emoji; so does the terminal.
_EMOJI = {
    ":white_check_mark:": "✅",
    ":warning:": "⚠️",
    ":x:": "❌",
    ":no_entry:": "⛔",
    ":no_entry_sign:": "🚫",
    ":hourglass:": "⌛",
    ":hourglass_flowing_sand:": "⏳",
    ":information_source:": "ℹ️",
}
_SHORTCODE = re.compile("|".join(re.escape(code) for code in _EMOJI))


def plain(mrkdwn: str) -> str:
    text = _DATE.sub(r"\1", mrkdwn)
    text = _MENTION.sub(r"@\1", text)
    text = _GROUP.sub(r"@\1", text)
    text = _CHANNEL.sub(r"#\1", text)
    text = _SHORTCODE.sub(lambda m: _EMOJI[m.group(0)], text)
    return unescape(text)


def render(message: blocks.Message) -> tuple[str, list[dict[str, Any]]]:
    """A message as terminal text, plus its buttons in the order they are numbered."""
    lines: list[str] = []
    buttons: list[dict[str, Any]] = []
    for block in message.get("blocks", []):
        kind = block["type"]
        if kind == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif kind == "section":
            lines.append(plain(block["text"]["text"]))
            if (accessory := block.get("accessory")) and accessory.get("type") == "button":
                buttons.append(accessory)
                lines.append(f"   [{len(buttons)}] {accessory['text']['text']}")
        elif kind == "context":
            lines.extend("  " + plain(e["text"]) for e in block["elements"])
        elif kind == "actions":
            labels = []
            for element in block["elements"]:
                buttons.append(element)
                labels.append(f"[{len(buttons)}] {element['text']['text']}")
            lines.append("   ".join(labels))
    return "\n".join(lines), buttons


class Shell:
    def __init__(self, runtime: Runtime, *, user: str, out: TextIO, files: Path | None = None) -> None:
        self.runtime = runtime
        self.files = files
        self.user = user
        self.out = out
        self.buttons: list[dict[str, Any]] = []
        self.card_for: str | None = None  # who sees the buttons: one user (ephemeral card), None: everyone

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show(self, message: blocks.Message, *, where: str) -> None:
        text, buttons = render(message)
        self.say(f"--- {where} ---\n{text}")
        if buttons:
            self.buttons = buttons
            self.card_for = self.user if where == _WHERE["ephemeral"] else None
            self.say(f"(type 1-{len(buttons)} to click)")

    def visible_buttons(self) -> list[dict[str, Any]]:
        return self.buttons if self.card_for in (None, self.user) else []

    async def switch(self, user: str) -> None:
        """`/as U…`: act as another Slack user, to see what they see (the two-person rule, refusals)."""
        if refusal := as_refused(self.runtime.settings):
            self.say(refusal)
            return
        if not _USER_ID.fullmatch(user):
            self.say("`/as` takes a Slack user ID, like `/as U0DANA`.")
            return
        self.user = user
        admin = await self.runtime.flow.auth.is_admin(user)
        note = ""
        if self.buttons and not self.visible_buttons():
            note = f" The last card was only for {self.card_for}; {user} does not see it."
        self.say(f"You are now {user} ({'admin' if admin else 'not an admin'}).{note}")

    async def line(self, raw: str, read: Any) -> bool:
        text = raw.strip()
        if not text:
            return True
        if text in ("quit", "exit", ":q"):
            return False
        if text.isdigit() and self.visible_buttons():
            await self.click(int(text), read)
            return True
        if text == "/as" or text.startswith("/as "):
            await self.switch(text.removeprefix("/as").strip())
            return True
        if m := re.fullmatch(r"wait\s+([0-9]{1,3})", text):  # let time pass: scheduled removals fire
            self.say(f"(waiting {m.group(1)} s)")
            await asyncio.sleep(int(m.group(1)))
            return True
        if text.startswith("/seat"):
            reply = await self.runtime.flow.command(
                user=self.user, channel=SHELL_CHANNEL, text=slack_escape(text.removeprefix("/seat"))
            )
            self.deliver(replies.for_command(reply))
            return True
        self.say(
            "Type a /seat command (try `/seat help`), a button number, `/as <user ID>`, `wait <seconds>`, "
            "or `quit`."
        )
        return True

    async def click(self, number: int, read: Any) -> None:
        if not 1 <= number <= len(self.buttons):
            self.say(f"There is no button {number}.")
            return
        button = self.buttons[number - 1]
        dialog = button.get("confirm")
        if dialog:
            self.say(f"{dialog['title']['text']} {dialog['text']['text']} [y/N]")
            answer = read()
            if answer is None or answer.strip().lower() not in ("y", "yes"):
                self.say("Not confirmed; nothing was done.")
                return
        if button["action_id"] == "seat_unschedule":
            schedules = self.runtime.schedules
            if schedules is not None:
                self.buttons = []  # the list is stale now: `/seat scheduled` shows it again
                self.deliver(replies.for_click(await schedules.unschedule(button["value"], user=self.user)))
            return
        action: Literal["confirm", "cancel"] = (
            "confirm" if button["action_id"] == "seat_confirm" else "cancel"
        )

        async def progress(status: Any) -> None:
            self.show(replies.for_progress(status), where="card")

        reply = replies.for_click(
            await self.runtime.flow.click(
                action=action, pending_id=button["value"], user=self.user, progress=progress
            )
        )
        if reply.placement != "ephemeral":  # the card was replaced; a refusal leaves it for the right person
            self.buttons = []
        self.deliver(reply)

    def deliver(self, reply: replies.Reply) -> None:
        self.show(reply.message, where=_WHERE[reply.placement])
        if reply.upload is not None:  # Slack gets the file in the channel; the shell writes it here
            path = self.write(reply.upload.filename, reply.upload.content)
            rows = reply.upload.content.count(b"\n") - 1
            self.say(f"--- file ---\n{reply.upload.title}: {rows} rows written to {path}")

    def write(self, filename: str, content: bytes) -> Path:
        """A file under a name no earlier file has, in --files or else a fresh temporary folder: never
        into the current directory (a checkout) and never over an earlier run's file."""
        if self.files is None:
            self.files = Path(tempfile.mkdtemp(prefix="seatbot-shell-"))
        stem, suffix = Path(filename).stem, Path(filename).suffix
        for n in itertools.count(1):
            path = self.files / (filename if n == 1 else f"{stem}-{n}{suffix}")
            try:
                with path.open("xb") as out:  # exclusive: two shells in the same second never collide
                    out.write(content)
                return path.resolve()
            except FileExistsError:
                continue
        raise AssertionError("unreachable")

    async def announce(self, channel: str, what: Announcement) -> None:
        """A scheduled removal's news, as chat.postMessage would post it in the channel."""
        if isinstance(what, Fired):
            message = schedule_blocks.fired(what)
        elif isinstance(what, Unscheduled):
            message = schedule_blocks.unscheduled(what)
        else:
            message = schedule_blocks.schedule_confirmed(what)
        self.show(message, where=f"posted in {channel}")


def live(settings: Settings) -> bool:
    """Real Cloudflare credentials or a shared Redis: what the shell does counts outside it."""
    return settings.has_cloudflare_credentials or settings.redis_url is not None


def as_refused(settings: Settings) -> str | None:
    """Why `/as` (and `--user`) may not be used here, or None. With live settings one operator could
    request as themselves and confirm as another admin: two people on paper, one in fact."""
    if not live(settings) or settings.seatbot_shell_allow_as:
        return None
    return (
        "`/as` and `--user` are off with live settings (Cloudflare credentials or REDIS_URL are set): "
        "acting as another admin would let one person pass the two-person rule and put another admin's "
        "name in the audit. Set SEATBOT_SHELL_ALLOW_AS=true to allow it; every audit event then names "
        "this shell and your OS user."
    )


def origin() -> dict[str, str]:
    """What every audit event the shell writes carries: where it came from and who ran it."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        os_user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return {"via": "shell", "os_user": os_user}


def banner(runtime: Runtime, user: str, hint: bool) -> str:
    lines = ["seatbot shell: type `/seat help`, `quit` to leave."]
    if runtime.sandbox is not None:
        people = ", ".join(email for email, _ in DEMO_USERS)
        lines.append(f"Cloudflare: SANDBOX (no credentials set); demo users: {people}")
        idle = len(runtime.sandbox.users) - len(DEMO_USERS)
        if idle > 0:
            lines.append(f"Plus {idle} idle demo users (idle0001@example.com, …): try `/seat idle`.")
        lines.append("Mentions: <@U0ALICE> is alice@example.com (and so on for the demo users).")
        if runtime.sandbox.synthetic.count:
            lines.append(
                f"Plus {runtime.sandbox.synthetic.count:,} synthetic users "
                "(user000001@synthetic.example.com, seat 00000000-5eed-4000-8000-000000000001, …)."
            )
    else:
        account = runtime.settings.cloudflare_account_id
        base = redact_url(runtime.settings.cloudflare_base_url)
        if base.rstrip("/") == DEFAULT_BASE_URL:
            lines.append(f"Cloudflare: LIVE account {account} at {base}: revokes are real")
        else:
            lines.append(
                f"Cloudflare: account {account} at {base} (CLOUDFLARE_BASE_URL, not Cloudflare's API)"
            )
    lines.append("Store: in-process" if runtime.in_process_store else "Store: Redis (REDIS_URL)")
    admin = "admin" if user in runtime.flow.policy.admins else "not an admin"
    if as_refused(runtime.settings):
        lines.append(f"You are {user} ({admin}); `/as` is off with live settings (SEATBOT_SHELL_ALLOW_AS).")
    else:
        lines.append(f"You are {user} ({admin}); `/as <user ID>` acts as someone else.")
    if live(runtime.settings):
        lines.append(f"Audit events from this shell say so, and name OS user {origin()['os_user']}.")
    if hint:
        lines.append(
            "To go live: set SLACK_BOT_TOKEN with SLACK_SIGNING_SECRET (HTTP) "
            "or SLACK_APP_TOKEN (Socket Mode); see the README."
        )
    return "\n".join(lines)


async def run_shell(
    settings: Settings,
    *,
    user: str = SHELL_USER,
    go_live_hint: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    idle_users: int = 0,
    files: Path | None = None,
) -> int:
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    # The shell's own user is always an admin, so other users (`--user`, `/as`) get the real answers.
    if SHELL_USER not in settings.seatbot_admins:
        settings = settings.model_copy(update={"seatbot_admins": (*settings.seatbot_admins, SHELL_USER)})
    if user != SHELL_USER and (refusal := as_refused(settings)):
        print(f"seatbot: {refusal}", file=sys.stderr)
        return 2
    runtime = build_runtime(settings, directory=ShellDirectory(), allow_sandbox=True, origin=origin())
    if runtime.sandbox is not None:
        for record in demo_idle.idle_users(idle_users):
            runtime.sandbox.add_user(record)
    shell = Shell(runtime, user=user, out=out, files=files)
    if runtime.schedules is not None:
        runtime.schedules.announce = shell.announce
    shell.say(banner(runtime, user, go_live_hint))
    interactive = stdin.isatty()

    def read() -> str | None:
        if interactive:
            print("> ", end="", file=out, flush=True)
        line = stdin.readline()
        if line and not interactive:  # piped: echo, so the transcript reads like a session
            shell.say(f"> {line.rstrip()}")
        return line if line else None

    try:
        await runtime.start_jobs()  # scheduled removals and the directory's refresh run in this process
        # At a terminal, read in a thread so a scheduled removal fires while you sit at the prompt;
        # piped input is read in line (deterministic: only `wait N` and commands let time pass).
        while (raw := (await asyncio.to_thread(read)) if interactive else read()) is not None:
            if not await shell.line(raw, read):
                break
    finally:
        await runtime.aclose()
    return 0
