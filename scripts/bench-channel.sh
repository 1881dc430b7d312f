#!/usr/bin/env bash
# The channel part of `make bench`: echo throughput vs plain TCP and a minimal rustls echo,
# rotation cost, handshakes/s (own client and openssl s_time), memory per idle connection.
# Sizes: TESSERA_BENCH_* environment variables (see docs/channel.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# 10,000 idle connections need descriptors on both ends (the hard limit must allow it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -n 20000 2>/dev/null || true
exec cargo bench --bench channel -- "$@"
