"""`make bench`: run every benchmark in turn (PostgreSQL named by DATABASE_URL)."""

import asyncio

from bench import p3_wallet_debits

for benchmark in (p3_wallet_debits,):
    asyncio.run(benchmark.main())
