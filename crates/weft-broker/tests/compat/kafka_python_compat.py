"""kafka-python against a running Weft broker: admin, idempotent produce with every codec,
consume without a group, offsets by time, DeleteRecords, configs, invalid names, and a consumer
group: subscribe, commit, and a second member resumes from the committed offset.

Run by tests/kafka_python.rs as `python3 kafka_python_compat.py <bootstrap>`; exits non-zero
with a message on the first failed check.
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import InvalidTopicError, TopicAlreadyExistsError, UnsupportedVersionError

from keyed_checks import check, check_keyed

BOOTSTRAP = sys.argv[1]
N = 20000
KEYS = 61
HANG_S = 180  # bound against hangs, never a performance threshold


def consume(topic, partitions, n):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out = []
    deadline = time.time() + HANG_S
    while len(out) < n:
        check(time.time() < deadline, f"{topic}: consumed {len(out)} of {n}")
        for tp, msgs in c.poll(timeout_ms=500).items():
            out.extend((tp.partition, m.offset, m.key, m.value, m.timestamp) for m in msgs)
    extra = sum(len(v) for v in c.poll(timeout_ms=300).values())
    check(extra == 0, f"{topic}: {extra} unexpected extra records")
    c.close()
    return out


def codecs(admin):
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        topic = f"py-{codec or 'none'}"
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all",
                          compression_type=codec, linger_ms=5)
        futures = [p.send(topic, key=f"k{i % KEYS}".encode(), value=str(i // KEYS).encode())
                   for i in range(N)]
        p.flush(timeout=HANG_S)
        for f in futures:
            f.get(timeout=HANG_S)
        p.close()
        check_keyed(codec, [(r[0], r[2], r[3]) for r in consume(topic, 3, N)], N, KEYS)
        print(f"codec {codec}: {N} records ok", flush=True)


def times_and_delete_records(admin):
    topic = "py-times"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all")
    base = 1_700_000_000_000
    for i in range(10):
        p.send(topic, key=b"k", value=str(i).encode(), partition=0, timestamp_ms=base + i * 1000)
    p.flush()
    p.close()
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    tp = TopicPartition(topic, 0)
    for ts, want in [(base - 1, 0), (base, 0), (base + 2500, 3), (base + 9000, 9)]:
        got = c.offsets_for_times({tp: ts})[tp]
        check(got is not None and got.offset == want, f"offset for {ts}: {got}, want {want}")
    check(c.offsets_for_times({tp: base + 9001})[tp] is None, "beyond the last timestamp")
    check(c.beginning_offsets([tp])[tp] == 0 and c.end_offsets([tp])[tp] == 10, "watermarks")
    admin.delete_records({tp: 4})
    check(c.beginning_offsets([tp])[tp] == 4, "DeleteRecords moved the low watermark")
    c.close()
    got = consume(topic, 1, 6)
    check(got[0][1] == 4, f"first offset after DeleteRecords: {got[0][1]}")
    print("offsets by time and DeleteRecords ok", flush=True)


def configs(admin):
    topic = "py-configs"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.create_partitions({topic: NewPartitions(total_count=3)})
    md = admin.describe_topics([topic])
    check(len(md[0]["partitions"]) == 3, f"partitions after create_partitions: {md}")
    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "12345"})
    admin.alter_configs([res])
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")
    text = repr(described)
    check("retention.ms" in text and "12345" in text, f"retention.ms not read back: {text[:2000]}")
    check("cleanup.policy" in text, f"all configs listed: {text[:2000]}")
    print("configs ok", flush=True)


def invalid_names(admin):
    try:
        admin.create_topics([NewTopic("bad name!", num_partitions=1, replication_factor=1)])
    except InvalidTopicError:
        pass
    else:
        raise AssertionError("invalid topic name accepted")
    try:
        admin.create_topics([NewTopic("py-configs", num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    else:
        raise AssertionError("duplicate topic accepted")
    print("invalid names ok", flush=True)


def group_resume(admin):
    topic, group = "py-group", "py-group"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])

    def produce(start, end):
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all")
        for i in range(start, end):
            p.send(topic, key=f"k{i % KEYS}".encode(), value=str(i).encode())
        p.flush(timeout=HANG_S)
        p.close()

    def consume_group(n):
        c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest")
        c.subscribe([topic])
        got = []
        deadline = time.time() + HANG_S
        while len(got) < n:
            check(time.time() < deadline, f"group: consumed {len(got)} of {n}")
            for msgs in c.poll(timeout_ms=500).values():
                got.extend(int(m.value) for m in msgs)
        extra = sum(len(v) for v in c.poll(timeout_ms=300).values())
        check(extra == 0, f"group: {extra} unexpected extra records")
        c.commit()
        c.close()
        return sorted(got)

    produce(0, 100)
    check(consume_group(100) == list(range(100)), "group: first member read everything once")
    produce(100, 150)
    # The second member of the same group starts from the committed offsets, not the
    # beginning (auto_offset_reset would say earliest): only the new records.
    check(consume_group(50) == list(range(100, 150)), "group: second member resumed from commit")
    print("group subscribe, commit and resume ok", flush=True)


def legacy_produce(admin):
    """Pinned to old brokers, kafka-python sends Produce v1 (message format v0, api_version
    0.9) or v2 (format v1, 0.10): the broker answers UNSUPPORTED_VERSION per partition in
    those versions' layout, so the send fails cleanly, and stores nothing."""
    topic = "py-legacy"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    for api_version in [(0, 9), (0, 10)]:
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, api_version=api_version, retries=0)
        try:
            p.send(topic, key=b"k", value=b"old format").get(timeout=30)
            check(False, f"api_version {api_version}: an old-format produce was accepted")
        except UnsupportedVersionError:
            pass
        finally:
            p.close()
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    end = c.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    c.close()
    check(end == 0, f"legacy produce stored {end} records")
    print("legacy produce refused ok", flush=True)


def main():
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="weft-compat")
    codecs(admin)
    times_and_delete_records(admin)
    configs(admin)
    invalid_names(admin)
    group_resume(admin)
    legacy_produce(admin)
    admin.close()


if __name__ == "__main__":
    main()
