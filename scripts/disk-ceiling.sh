#!/usr/bin/env bash
# Measures the disk ceilings that docs/benchmarks.md compares weft-log's figures against, on
# the disk holding $1 (default: the temp dir). Each uses dd with the same write size and
# total as the benchmark it bounds, because on a virtual disk the figure depends strongly
# on both. Prints MB/s (10^6 bytes per second).
set -euo pipefail
dir=${1:-${TMPDIR:-/tmp}}
f="$dir/weft-ceiling.$$"
trap 'rm -f "$f"' EXIT
run() { # label, then dd arguments; dd's summary line ends with "<n> <unit>/s"
  local label=$1; shift
  printf '%-52s %s\n' "$label" "$(dd if=/dev/zero of="$f" "$@" 2>&1 | grep -oE '[0-9.,]+ [kMG]?B/s' | tail -1)"
  rm -f "$f"
}
run "ceiling: 1 GiB in 16 KiB writes, final fdatasync"  bs=16k count=65536 conv=fdatasync
run "ceiling: 256 MiB in 1 KiB writes, final fdatasync" bs=1k count=262144 conv=fdatasync
run "ceiling: 1 GiB in 1 MiB writes, final fdatasync"   bs=1M count=1024 conv=fdatasync
run "ceiling: 1 GiB in 1 MiB O_DIRECT writes (no page cache)" bs=1M count=1024 oflag=direct
run "ceiling: 256 MiB, data sync every 64 KiB"          bs=64k count=4096 oflag=dsync
run "ceiling: 64 MiB, data sync every 16 KiB"           bs=16k count=4096 oflag=dsync
run "ceiling: 8 MiB, data sync every 1 KiB"             bs=1k count=8192 oflag=dsync
