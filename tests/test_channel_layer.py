"""The channel layer's two-round-trip group send (gptoss_web/channel_layer.py), on the real Redis: what it
stores is channels_redis's own, so the library's receive reads it, with the library's capacity and expiry
rules."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from gptoss_web.channel_layer import TwoTripRedisChannelLayer

Layers = tuple[RedisChannelLayer, RedisChannelLayer, TwoTripRedisChannelLayer]


@pytest.fixture
async def layers() -> AsyncIterator[Layers]:
    """Two receiving layers as channels_redis ships them (two web processes) and a sending one of ours, on the
    same keys (dropped after)."""
    config = {"hosts": [settings.REDIS_URL], "prefix": f"test-layer-{secrets.token_hex(4)}", "capacity": 2}
    made = (RedisChannelLayer(**config, expiry=1), RedisChannelLayer(**config, expiry=1))
    sending = TwoTripRedisChannelLayer(**config, expiry=1)
    yield (*made, sending)
    await made[0].flush()
    for layer in (*made, sending):
        await layer.close_pools()


async def test_a_group_send_reaches_each_member_once_as_channels_redis_stores_it(layers: Layers) -> None:
    one, other, sending = layers
    first, second, outsider = await one.new_channel(), await other.new_channel(), await other.new_channel()
    await one.group_add("conversation.1", first)
    await one.group_add("conversation.1", second)
    await one.group_add("conversation.2", outsider)

    await sending.group_send("conversation.1", {"type": "chat.event", "payload": {"seq": 1}})

    for layer, channel in ((one, first), (other, second)):
        assert await asyncio.wait_for(layer.receive(channel), 5) == {
            "type": "chat.event",
            "payload": {"seq": 1},
        }
    for layer, channel in ((other, outsider), (one, first)):  # not in the group; once
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.3)


async def test_a_full_channel_gets_nothing_more_until_its_messages_expire(
    layers: Layers, caplog: pytest.LogCaptureFixture
) -> None:
    busy, reading, sending = layers
    slow, quick = await busy.new_channel(), await reading.new_channel()
    await busy.group_add("conversation.1", slow)
    await busy.group_add("conversation.1", quick)
    caplog.set_level("INFO", logger="gptoss_web.channel_layer")
    for seq in (1, 2, 3):  # the capacity is 2, and the slow process reads nothing
        await sending.group_send("conversation.1", {"type": "chat.event", "seq": seq})
        assert (await asyncio.wait_for(reading.receive(quick), 5))["seq"] == seq
    assert "1 of 2 channels over capacity in group conversation.1" in caplog.text

    await asyncio.sleep(2.2)  # the slow process's two messages expire (expiry 1 s) ...
    await sending.group_send("conversation.1", {"type": "chat.event", "seq": 4})
    assert (await asyncio.wait_for(busy.receive(slow), 5))["seq"] == 4  # ... and make room for the next
