"""A large synthetic account for the sandbox: numbered users generated on demand, not stored.

`user000042@synthetic.example.com` holds seat `00000000-5eed-4000-8000-000000000042`, so a seat UID
or an exact email maps straight to its index and 100,000 users cost a few integers until one is
changed (kept in `changed`) or removed (kept in `gone`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from typing import Any

from bot.devtools.demo_account import user_record

DOMAIN = "synthetic.example.com"
MAX_USERS = 999_999
_UID = re.compile(r"^00000000-5eed-4000-8000-(\d{12})$")
_EMAIL = re.compile(rf"^user(\d{{6}})@{re.escape(DOMAIN)}$", re.I)


def synthetic_email(index: int) -> str:
    return f"user{index:06d}@{DOMAIN}"


def synthetic_uid(index: int) -> str:
    return f"00000000-5eed-4000-8000-{index:012d}"


def _record(index: int) -> dict[str, Any]:
    return user_record(
        id=f"00000000-1d00-4000-8000-{index:012d}",
        uid=f"00000000-0a1d-4000-8000-{index:012d}",
        seat_uid=synthetic_uid(index),
        email=synthetic_email(index),
        name=f"Synthetic User {index}",
        index=index,
    )


class SyntheticUsers:
    """Users 1..count, minus removed ones, with per-user changes; listed in index order."""

    def __init__(self, count: int = 0) -> None:
        self.count = 0
        self.changed: dict[int, dict[str, Any]] = {}
        self._gone: list[int] = []  # sorted
        self.resize(count)

    def resize(self, count: int) -> None:
        if not 0 <= count <= MAX_USERS:
            raise ValueError(f"synthetic users: 0 to {MAX_USERS}")
        self.count = count

    def __len__(self) -> int:
        return self.count - len(self._gone)

    def _live(self, index: int) -> bool:
        if not 1 <= index <= self.count:
            return False
        at = bisect.bisect_left(self._gone, index)
        return not (at < len(self._gone) and self._gone[at] == index)

    def _get(self, index: int) -> dict[str, Any]:
        return self.changed.get(index) or _record(index)

    def index_of_uid(self, seat_uid: str) -> int | None:
        m = _UID.match(seat_uid)
        index = int(m.group(1)) if m else 0
        return index if self._live(index) else None

    def get(self, seat_uid: str) -> dict[str, Any] | None:
        index = self.index_of_uid(seat_uid)
        return None if index is None else self._get(index)

    def update(self, seat_uid: str, **fields: Any) -> dict[str, Any] | None:
        index = self.index_of_uid(seat_uid)
        if index is None:
            return None
        record = {**self._get(index), **fields}
        self.changed[index] = record
        return record

    def remove(self, seat_uid: str) -> bool:
        index = self.index_of_uid(seat_uid)
        if index is None:
            return False
        bisect.insort(self._gone, index)
        self.changed.pop(index, None)
        return True

    def slice(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Live users at positions [start, stop) of the listing."""
        if start >= len(self) or stop <= start:
            return []
        # the index of position `start`: the fixed point of start + 1 + (gone at or below it)
        index = start + 1
        while True:
            moved = start + 1 + bisect.bisect_right(self._gone, index)
            if moved == index:
                break
            index = moved
        out: list[dict[str, Any]] = []
        while len(out) < stop - start and index <= self.count:
            if self._live(index):
                out.append(self._get(index))
            index += 1
        return out

    def matching(self, field: str, needle: str) -> Iterator[dict[str, Any]]:
        """Users whose `field` contains `needle` (case-insensitively), as Cloudflare's filters match."""
        folded = needle.casefold()
        for index in sorted(self.changed):  # changed users may no longer look synthetic
            if folded in str(self.changed[index].get(field, "")).casefold():
                yield self.changed[index]
        if field == "email" and (m := _EMAIL.match(needle)):  # an exact address: no scan needed
            index = int(m.group(1))
            if self._live(index) and index not in self.changed:
                yield _record(index)
            return
        for index in range(1, self.count + 1):
            if index in self.changed or not self._live(index):
                continue
            value = synthetic_email(index) if field == "email" else f"Synthetic User {index}"
            if folded in value.casefold():
                yield _record(index)
