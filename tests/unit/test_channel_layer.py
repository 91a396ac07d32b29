"""The in-memory layer still expires what nobody reads, with its sweep bounded to once a second."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from vmportal.layers import InMemoryChannelLayer


async def test_unread_messages_and_stale_group_members_still_expire():
    layer = InMemoryChannelLayer(expiry=0.05, group_expiry=1)
    layer.sweep_interval = 0.1
    await layer.group_add("host.1", "page.a")
    await layer.send("page.a", {"type": "live.domain"})
    await asyncio.sleep(0.2)
    layer._clean_expired()
    assert "page.a" not in layer.channels
    assert "page.a" not in layer.groups.get("host.1", {})


async def test_a_fan_out_delivers_to_every_member():
    layer = InMemoryChannelLayer()
    for page in range(50):
        await layer.group_add("host.1", f"page.{page}")
    await layer.group_send("host.1", {"type": "live.domain", "seq": 7})
    received = [await layer.receive(f"page.{page}") for page in range(50)]
    assert [message["seq"] for message in received] == [7] * 50


async def test_a_channel_capacity_setting_applies_to_the_channels_it_names():
    layer = InMemoryChannelLayer(capacity=2, channel_capacity={"specific.*": 5})
    own, other = await layer.new_channel(), await layer.new_channel("other.")
    for seq in range(5):
        await layer.send(own, {"type": "live.domain", "seq": seq})
    with pytest.raises(ChannelFull):
        await layer.send(own, {"type": "live.domain", "seq": 5})
    for seq in range(2):
        await layer.send(other, {"type": "live.domain", "seq": seq})
    with pytest.raises(ChannelFull):
        await layer.send(other, {"type": "live.domain", "seq": 2})
