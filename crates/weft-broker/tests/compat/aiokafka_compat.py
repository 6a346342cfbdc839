"""aiokafka (asyncio, its own protocol implementation) against a running Weft broker: admin,
idempotent produce with every codec, consume without a group with per-key order checked,
offsets by time, DeleteRecords, configs, invalid names, and a consumer group that commits
and is resumed by a second member.

Run by tests/aiokafka.rs as `python3 aiokafka_compat.py <bootstrap>`; exits non-zero with a
message on the first failed check.
"""
import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.admin.records_to_delete import RecordsToDelete

from keyed_checks import check, check_keyed

BOOTSTRAP = sys.argv[1]
N = 20000
KEYS = 53
HANG_S = 180  # bound against hangs, never a performance threshold
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36


async def create(admin, topic, partitions):
    response = await admin.create_topics([NewTopic(topic, partitions, 1)])
    return {t[0]: t[1] for t in response.topic_errors}[topic]


async def read_all(topic, partitions, n):
    """Every record of the topic from the beginning, assigned (no group)."""
    c = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await c.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    out = []
    deadline = time.time() + HANG_S
    while len(out) < n:
        check(time.time() < deadline, f"{topic}: consumed {len(out)} of {n}")
        for tp, msgs in (await c.getmany(timeout_ms=500)).items():
            out.extend((tp.partition, m.offset, m.key, m.value) for m in msgs)
    extra = sum(len(v) for v in (await c.getmany(timeout_ms=300)).values())
    check(extra == 0, f"{topic}: {extra} unexpected extra records")
    await c.stop()
    return out


async def codecs(admin):
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        topic = f"aio-{codec or 'none'}"
        check(await create(admin, topic, 3) == 0, f"create {topic}")
        p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all",
                             compression_type=codec, linger_ms=5)
        await p.start()
        pending = [await p.send(topic, key=f"k{i % KEYS}".encode(), value=str(i // KEYS).encode())
                   for i in range(N)]
        await asyncio.wait_for(asyncio.gather(*pending), HANG_S)
        await p.stop()
        check_keyed(codec, [(r[0], r[2], r[3]) for r in await read_all(topic, 3, N)], N, KEYS)
        print(f"codec {codec}: {N} records ok", flush=True)


async def times_and_delete_records(admin):
    topic = "aio-times"
    check(await create(admin, topic, 1) == 0, f"create {topic}")
    p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all")
    await p.start()
    base = 1_700_000_000_000
    for i in range(10):
        await p.send_and_wait(topic, key=b"k", value=str(i).encode(), partition=0,
                              timestamp_ms=base + i * 1000)
    await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await c.start()
    tp = TopicPartition(topic, 0)
    for ts, want in [(base - 1, 0), (base, 0), (base + 2500, 3), (base + 9000, 9)]:
        got = (await c.offsets_for_times({tp: ts}))[tp]
        check(got is not None and got.offset == want, f"offset for {ts}: {got}, want {want}")
    check((await c.offsets_for_times({tp: base + 9001}))[tp] is None, "beyond the last timestamp")
    check((await c.beginning_offsets([tp]))[tp] == 0, "low watermark before")
    check((await c.end_offsets([tp]))[tp] == 10, "high watermark")
    lows = await admin.delete_records({tp: RecordsToDelete(before_offset=4)})
    check(lows[tp] == 4, f"DeleteRecords answered low watermark {lows}")
    check((await c.beginning_offsets([tp]))[tp] == 4, "DeleteRecords moved the low watermark")
    await c.stop()
    got = await read_all(topic, 1, 6)
    check(got[0][1] == 4, f"first offset after DeleteRecords: {got[0][1]}")
    print("offsets by time and DeleteRecords ok", flush=True)


async def configs(admin):
    topic = "aio-configs"
    check(await create(admin, topic, 1) == 0, f"create {topic}")
    altered = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "12345"})])
    check(all(r[0] == 0 for a in altered for r in a.resources), f"alter_configs: {altered}")
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = {e[0]: e[1] for d in described for r in d.resources for e in r[4]}
    check(entries.get("retention.ms") == "12345", f"retention.ms read back: {entries}")
    check("cleanup.policy" in entries and "max.message.bytes" in entries,
          f"every config listed: {sorted(entries)}")
    print("configs ok", flush=True)


async def invalid_names(admin):
    check(await create(admin, "bad name!", 1) == INVALID_TOPIC_EXCEPTION, "invalid name accepted")
    check(await create(admin, "aio-configs", 1) == TOPIC_ALREADY_EXISTS, "duplicate accepted")
    check("bad name!" not in await admin.list_topics(), "the invalid topic was created")
    print("invalid names ok", flush=True)


async def group_resume(admin):
    topic, group = "aio-group", "aio-group"
    check(await create(admin, topic, 3) == 0, f"create {topic}")

    async def produce(start, end):
        p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all")
        await p.start()
        for i in range(start, end):
            await p.send(topic, key=f"k{i % KEYS}".encode(), value=str(i).encode())
        await p.flush()
        await p.stop()

    async def consume_group(n):
        c = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        got = []
        deadline = time.time() + HANG_S
        while len(got) < n:
            check(time.time() < deadline, f"group: consumed {len(got)} of {n}")
            for msgs in (await c.getmany(timeout_ms=500)).values():
                got.extend(int(m.value) for m in msgs)
        extra = sum(len(v) for v in (await c.getmany(timeout_ms=300)).values())
        check(extra == 0, f"group: {extra} unexpected extra records")
        await c.commit()
        await c.stop()
        return sorted(got)

    await produce(0, 100)
    check(await consume_group(100) == list(range(100)), "group: first member read everything")
    await produce(100, 150)
    # The next member starts from the committed offsets, not from the earliest.
    check(await consume_group(50) == list(range(100, 150)), "group: resumed from the commit")
    print("group subscribe, commit and resume ok", flush=True)


async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="weft-compat")
    await admin.start()
    try:
        await codecs(admin)
        await times_and_delete_records(admin)
        await configs(admin)
        await invalid_names(admin)
        await group_resume(admin)
    finally:
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
