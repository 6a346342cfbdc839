"""A kafka-python consumer-group member for tests/group_churn.rs.

Consumes CHURN_TOPIC in group CHURN_GROUP until stdin closes, appending one line per event to
CHURN_OUT (format in group_churn.rs): assignments and revocations from the rebalance
listener, every processed record, commits. Offsets are committed synchronously after each
processed batch and in the revocation callback, so nothing is committed before it was
processed (at-least-once). Configuration comes from the CHURN_* environment variables.
"""
import os
import sys
import threading
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

ASSIGNORS = {
    "cooperative-sticky": CooperativeStickyAssignor,
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
}

out = open(os.environ["CHURN_OUT"], "a", buffering=1)


def now_us():
    return time.time_ns() // 1000


def event(line):
    out.write(line + "\n")
    out.flush()


def plist(tps):
    ps = sorted(tp.partition for tp in tps)
    return ",".join(str(p) for p in ps) if ps else "-"


stop = threading.Event()


def watch_stdin():
    sys.stdin.read()
    stop.set()


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        event(f"V {now_us()} {plist(revoked)}")

    def on_partitions_assigned(self, assigned):
        event(f"A {now_us()} {plist(assigned)}")

    def on_partitions_lost(self, lost):
        event(f"L {now_us()} {plist(lost)}")


def main():
    event(f"S {now_us()}")
    instance = os.environ.get("CHURN_INSTANCE") or None
    consumer = KafkaConsumer(
        bootstrap_servers=os.environ["CHURN_BOOTSTRAP"],
        group_id=os.environ["CHURN_GROUP"],
        client_id=os.environ["CHURN_CLIENT"],
        group_instance_id=instance,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=int(os.environ["CHURN_SESSION_MS"]),
        heartbeat_interval_ms=500,
        partition_assignment_strategy=[ASSIGNORS[os.environ["CHURN_STRATEGY"]]],
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=500,
    )
    consumer.subscribe([os.environ["CHURN_TOPIC"]], listener=Listener())
    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=100)
        processed = False
        for tp, records in batches.items():
            for r in records:
                key = r.key.decode()
                seq = r.value.decode().rsplit(":", 1)[1]
                event(f"R {now_us()} {tp.partition} {r.offset} {key} {seq}")
                processed = True
        if processed:
            try:
                # Positions of the records just processed; a rebalance may refuse it, then
                # the next owner reprocesses from the previous commit.
                consumer.commit()
            except Exception as e:  # noqa: BLE001 - any refusal is retried by the next owner
                print(f"commit failed: {e!r}", file=sys.stderr)
    # Processing has stopped: the partitions are given up before the group hears of it.
    event(f"V {now_us()} {plist(consumer.assignment())}")
    consumer.close()
    event(f"E {now_us()}")


if __name__ == "__main__":
    main()
