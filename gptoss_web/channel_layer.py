"""The channel layer: channels_redis's core layer, with a group send in two round trips to Redis and a receive
in one.

channels_redis 4.3 sends to a group in four: it drops the group's expired members, reads the members, drops
the expired messages of their channels, then adds the message where there is room. Every broadcast of the app
(each reply's first text among them) is a group send, and on a busy server each round trip waits for the CPU.
Here the first two go in one pipeline and the last two in one script; what is stored, and where, is the
library's own (its member list, its channel keys, its serialized messages, its capacity and expiry rules).

Its receive makes three more round trips per message around the blocking pop: before it, a script that moves
back what a cancelled receive left in a backup set; after it, an add to that backup set (awaited before the
message is handed over) and a pop from it. The backup cannot save what it is meant to: a receive cancelled
while the pop's answer is on its way loses that message with or without it, and a receive cancelled while the
backup add is on its way is the only case it covers, a case of its own making. Here a received message is
handed over as soon as the pop returns it, and the web process's receive loop waits for nothing else
between two messages (the events of a reply arrive in bursts: the question, the reply, its start, its first
text). A message lost to a cancelled receive (a socket closing, which is the only cancellation here) is one
its socket no longer needs, or one the socket watcher (chat/consumers.py) resends as state within seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

# A blocking send waits this long for Redis before it fails (the caller then degrades: chat/events.py).
BLOCKING_TIMEOUT_S = 2

# KEYS: the channels' keys; ARGV: a message per key, a capacity per key, then the time, the messages' expiry
# in seconds and the score below which a message has expired. channels_redis's own script, each key's expired
# messages dropped first (the round trip it makes before it).
GROUP_SEND_LUA = """
local over_capacity = 0
local current_time = ARGV[#ARGV - 2]
local expiry = ARGV[#ARGV - 1]
local expired_before = ARGV[#ARGV]
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


@dataclass(frozen=True)
class LogEntry:
    """An entry to append to a Redis list (kept *ttl_s* seconds after the newest) before a group send."""

    key: str
    entry: str
    ttl_s: int


class TwoTripRedisChannelLayer(RedisChannelLayer):
    """channels_redis's RedisChannelLayer whose `group_send` makes two round trips instead of four, and whose
    receive makes one instead of four."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One blocking client per Redis server, for sync callers (it connects on first use; its pool serves
        # every thread of the process).
        self._blocking_clients = [
            redis.Redis.from_url(
                host["address"], socket_timeout=BLOCKING_TIMEOUT_S, socket_connect_timeout=BLOCKING_TIMEOUT_S
            )
            for host in self.hosts
        ]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        key, now = self._checked_group_key(group), time.time()
        pipe = self.connection(self.consistent_hash(group)).pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        for index, keys, arguments in self._deliveries(group, members, message, now):
            over = await self.connection(index).eval(GROUP_SEND_LUA, len(keys), *arguments)
            self._over_capacity(group, over, len(members))

    def group_send_blocking(
        self, group: str, message: dict[str, Any], *, log: LogEntry | None = None
    ) -> None:
        """Send *message* to *group* from a sync caller (a GPU worker's task thread, a view's), waiting for no
        other thread: the same two round trips as `group_send`, on a blocking connection.

        With *log*, its entry is appended to its list in the first round trip, so it is stored before any
        member can receive the message (the list is on the group's Redis: this layer has one).
        """
        if log is not None and len(self.hosts) != 1:
            raise ValueError("a logged group send needs a channel layer on one Redis server")
        key, now = self._checked_group_key(group), time.time()
        pipe = self._blocking(self.consistent_hash(group)).pipeline(transaction=False)
        if log is not None:
            pipe.rpush(log.key, log.entry)
            pipe.expire(log.key, log.ttl_s)
        pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        members = pipe.execute()[-1]
        for index, keys, arguments in self._deliveries(group, members, message, now):
            over = self._blocking(index).eval(GROUP_SEND_LUA, len(keys), *arguments)
            self._over_capacity(group, over, len(members))

    def _deliveries(
        self, group: str, members: list[bytes], message: dict[str, Any], now: float
    ) -> Iterator[tuple[int, list[str], list[Any]]]:
        """Yield, per Redis server, the channel keys of the group's *members* and the script's arguments."""
        channel_names = [member.decode("utf8") for member in members]
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            arguments = [
                *keys,
                *(messages[k] for k in keys),
                *(capacities[k] for k in keys),
                now,
                self.expiry,
                int(now) - int(self.expiry),
            ]
            yield index, keys, arguments

    def _checked_group_key(self, group: str) -> bytes:
        assert self.require_valid_group_name(group), "Group name not valid"
        return bytes(self._group_key(group))

    def _over_capacity(self, group: str, over: int, members: int) -> None:
        if over > 0:
            logger.info("%s of %s channels over capacity in group %s", over, members, group)

    def _blocking(self, index: int) -> redis.Redis:
        return self._blocking_clients[index]

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> bytes | None:
        result = await self.connection(index).bzpopmin(channel, timeout=timeout)
        if result is None:
            return None
        _, member, _ = result
        return bytes(member)

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        return None  # no backup set is written (_brpop_with_clean)
