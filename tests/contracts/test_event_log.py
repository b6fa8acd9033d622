import asyncio

from segue.core.model import NewRecord


def rec(message_id, source="web", body=b"{}"):
    return NewRecord(source, message_id, 1.0, "user_id:1", body)


def test_append_assigns_increasing_offsets_and_dedupes_per_source(event_log):
    assert event_log.last_offset() == 0
    assert event_log.append([rec("a"), rec("b")]) == [1, 2]
    assert event_log.append([rec("a"), rec("c"), rec("c"), rec("a", source="app")]) == [
        None,
        3,
        None,
        4,
    ]
    assert event_log.last_offset() == 4
    assert [r.message_id for r in event_log.read(0, 10)] == ["a", "b", "c", "a"]


def test_read_and_get_return_bodies_in_order(event_log):
    event_log.append([rec(f"m{i}", body=f'{{"i":{i}}}'.encode()) for i in range(10)])
    page = event_log.read(3, 4)
    assert [r.offset for r in page] == [4, 5, 6, 7]
    assert page[0].body == b'{"i":3}'
    assert [r.offset for r in event_log.get([9, 2, 42])] == [9, 2]
    assert event_log.read(10, 5) == []


def test_concurrent_appends_share_commits_and_lose_nothing(event_log):
    async def many():
        groups = [[rec(f"g{g}-{i}") for i in range(5)] for g in range(40)]
        return await asyncio.gather(*(event_log.adapter.append(g) for g in groups))

    results = event_log.run(many())
    offsets = [o for group in results for o in group]
    assert sorted(offsets) == list(range(1, 201))
    assert event_log.last_offset() == 200


def test_wait_returns_when_data_arrives(event_log):
    async def scenario():
        waiter = asyncio.ensure_future(event_log.adapter.wait(0, 5.0))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await event_log.adapter.append([rec("x")])
        await asyncio.wait_for(waiter, 1.0)
        await event_log.adapter.wait(0, 5.0)  # already past: returns at once

    event_log.run(scenario())
