"""Every key the bot keeps in Redis, under one hash tag, and the move from the names before it.

Redis Cluster runs a script or a MULTI only on keys of one hash slot, and the slot of a key with
`{…}` in it is that of the text between the braces. All the bot's keys start with `{seatbot}:`
(saq's, on a cluster, with `saq:{seatbot}:`, bot/jobs/runner.py), so every script and transaction holds
on a cluster as on one Redis. One slot means one primary holds the bot's data: a cluster gives
it failover, not sharding, which it does not need (about 80 MB at 100,000 users).

Layout 1 (releases before this) named keys `seatbot:…`. Moving them is a format change: each
process, before it serves, runs `migrate`: while the layout marker is not 2, one Lua script renames
every `seatbot:…` key to `{seatbot}:…` (their TTLs go with them) and sets the marker; the script is
atomic, so processes starting together move the keys once. A process of layout 1 does not see the
renamed keys: stop those before starting this release (README, "Upgrading").
"""

from __future__ import annotations

import logging

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster

log = logging.getLogger("seatbot.redis")

TAG = "{seatbot}"
ROOT = TAG + ":"
LAYOUT = 2
LAYOUT_KEY = ROOT + "layout"
LEGACY = "seatbot:"  # layout 1's prefix


def key(name: str) -> str:
    """The Redis key for `name` (`pending:<id>`, `audit`, …): in the bot's one hash slot."""
    return ROOT + name


# KEYS[1] the layout marker. ARGV: layout, legacy prefix, new prefix. Returns the keys moved, or
# -1 when the layout is current. A key whose new name exists already is left where it is.
_MIGRATE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return -1 end
local moved, cursor = 0, '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[2] .. '*', 'COUNT', 1000)
  cursor = page[1]
  for _, old in ipairs(page[2]) do
    local new = ARGV[3] .. string.sub(old, #ARGV[2] + 1)
    if redis.call('EXISTS', new) == 0 then
      redis.call('RENAME', old, new)
      moved = moved + 1
    end
  end
until cursor == '0'
redis.call('SET', KEYS[1], ARGV[1])
return moved
"""


async def migrate(redis: aredis.Redis) -> int:
    """Move layout 1's keys to their names in the hash slot, once; returns how many moved.

    On a cluster there is nothing to move (layout 1 could not run there: its scripts span slots)."""
    if isinstance(redis, RedisCluster):
        return 0
    moved = int(await redis.eval(_MIGRATE, 1, LAYOUT_KEY, LAYOUT, LEGACY, ROOT))
    if moved > 0:
        log.warning(
            "moved %d Redis keys of the previous release (seatbot:*) to this release's names (%s*)",
            moved,
            ROOT,
        )
    return max(moved, 0)
