"""Checks shared by the Python compatibility scripts (kafka_python_compat.py,
aiokafka_compat.py), which sit beside this file and import it."""


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_keyed(label, records, n, keys):
    """`records` are (partition, key, value) read back after producing record i with key
    `k{i % keys}` and value `i // keys`, for i in 0..n: every key stays on one partition
    and its values arrive exactly once, in order."""
    per_key, partition_of = {}, {}
    for partition, key, value in records:
        per_key.setdefault(key, []).append(int(value))
        check(partition_of.setdefault(key, partition) == partition, f"{label}: key {key} moved")
    check(len(per_key) == keys, f"{label}: {len(per_key)} keys")
    for key, seqs in per_key.items():
        k = int(key[1:])
        want = list(range((n - k + keys - 1) // keys))
        check(seqs == want, f"{label}: key {key}: order or exactly-once broken")
