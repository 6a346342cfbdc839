#!/usr/bin/env bash
# Measures the physical ceilings that docs/benchmarks.md compares Weft's figures against:
# raw sequential write bandwidth of the disk holding $1 (default: the temp dir), with one
# final fdatasync and with a data sync after every 64 KiB write. Uses dd; prints MB/s.
set -euo pipefail
dir=${1:-${TMPDIR:-/tmp}}
f="$dir/weft-ceiling.$$"
trap 'rm -f "$f"' EXIT
rate() { # dd's summary line ends with "<n> <unit>/s"
  grep -oE '[0-9.,]+ [kMG]?B/s' | tail -1
}
echo "write 1 GiB, final fdatasync:   $(dd if=/dev/zero of="$f" bs=1M count=1024 conv=fdatasync 2>&1 | rate)"
rm -f "$f"
echo "write 256 MiB, dsync every 64 KiB: $(dd if=/dev/zero of="$f" bs=64k count=4096 oflag=dsync 2>&1 | rate)"
rm -f "$f"
echo "write 64 MiB, dsync every 1 KiB:  $(dd if=/dev/zero of="$f" bs=1k count=16384 oflag=dsync 2>&1 | rate)"
