"""Load benchmark: our server beside a stock-Channels baseline, same PostgreSQL and Redis.

``make bench`` (or ``python -m bench.run --help``); see docs/performance.md.
"""
