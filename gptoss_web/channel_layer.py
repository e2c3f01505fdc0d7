"""The channel layer: channels_redis's core layer, with a group send in two round trips to Redis.

channels_redis 4.3 sends to a group in four: it drops the group's expired members, reads the members, drops
the expired messages of their channels, then adds the message where there is room. Every broadcast of the app
(each reply's first text among them) is a group send, and on a busy server each round trip waits for the CPU.
Here the first two go in one pipeline and the last two in one script; what is stored, and where, is the
library's own (its member list, its channel keys, its serialized messages, its capacity and expiry rules).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

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


class TwoTripRedisChannelLayer(RedisChannelLayer):
    """channels_redis's RedisChannelLayer whose `group_send` makes two round trips instead of four."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        now = time.time()
        pipe = self.connection(self.consistent_hash(group)).pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        channel_names = [member.decode("utf8") for member in members]
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            over = await self.connection(index).eval(
                GROUP_SEND_LUA,
                len(keys),
                *keys,
                *(messages[k] for k in keys),
                *(capacities[k] for k in keys),
                now,
                self.expiry,
                int(now) - int(self.expiry),
            )
            if over > 0:
                logger.info("%s of %s channels over capacity in group %s", over, len(channel_names), group)
