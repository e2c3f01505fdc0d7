"""The channel layer's two-round-trip group send and one-round-trip receive (gptoss_web/channel_layer.py), on
the real Redis: what it stores is channels_redis's own, so the library's receive reads it, with the library's
capacity and expiry rules."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from gptoss_web.channel_layer import LogEntry, TwoTripRedisChannelLayer

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


async def test_a_receive_hands_each_message_over_after_one_round_trip_in_order(layers: Layers) -> None:
    _, _, ours = layers
    sockets = [await ours.new_channel() for _ in range(2)]
    for channel in sockets:
        await ours.group_add("conversation.1", channel)
    sent: list[str] = []
    connection = ours.connection(ours.consistent_hash(sockets[0]))
    execute = connection.execute_command

    async def recording(*args: object, **options: object) -> object:
        sent.append(str(args[0]).upper())
        return await execute(*args, **options)

    connection.execute_command = recording  # type: ignore[method-assign]
    for seq in (1, 2):  # a burst, as a reply's first events come (the capacity is 2)
        await ours.group_send("conversation.1", {"type": "chat.event", "seq": seq})
    sent.clear()
    got: dict[str, list[object]] = {channel: [] for channel in sockets}
    for _ in range(2):
        for channel in sockets:
            got[channel].append((await asyncio.wait_for(ours.receive(channel), 5))["seq"])
    assert got == {channel: [1, 2] for channel in sockets}
    await asyncio.sleep(0.1)  # any clean-up the receive left behind has run
    # One pop per stored message (the two sockets of a process share its key), and no backup set written or
    # read around them.
    assert sent == ["BZPOPMIN"] * 2


async def test_a_receive_cancelled_while_waiting_loses_nothing_sent_after(layers: Layers) -> None:
    _, _, ours = layers
    channel = await ours.new_channel()
    await ours.group_add("conversation.1", channel)
    waiting = asyncio.ensure_future(ours.receive(channel))
    await asyncio.sleep(0.2)
    waiting.cancel()  # a socket closing while the process waits for its next event
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await ours.group_send("conversation.1", {"type": "chat.event", "seq": 1})

    assert (await asyncio.wait_for(ours.receive(channel), 5))["seq"] == 1


async def test_a_blocking_send_stores_its_log_entry_first_and_reaches_each_member_once(
    layers: Layers,
) -> None:
    """A GPU worker's task thread publishes a reply's stream event: into the reply's list, then to its sockets
    (one in each web process), in its own thread."""
    one, other, ours = layers
    first, second = await one.new_channel(), await other.new_channel()
    await one.group_add("conversation.1", first)
    await one.group_add("conversation.1", second)
    log = LogEntry(f"{ours.prefix}:stream:7", '{"seq": 1}', 60)

    def send() -> tuple[list[bytes], int]:
        ours.group_send_blocking("conversation.1", {"type": "chat.event", "payload": {"seq": 1}}, log=log)
        stored = ours._blocking(0)
        return stored.lrange(log.key, 0, -1), stored.ttl(log.key)

    entries, ttl = await asyncio.to_thread(send)

    assert entries == [b'{"seq": 1}'] and 0 < ttl <= 60
    for layer, channel in ((one, first), (other, second)):
        assert await asyncio.wait_for(layer.receive(channel), 5) == {
            "type": "chat.event",
            "payload": {"seq": 1},
        }
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(one.receive(first), 0.3)
    await asyncio.to_thread(ours._blocking(0).delete, log.key)
