"""`make bench`: run every benchmark in turn (PostgreSQL named by DATABASE_URL).

P4 sends 100,000 requests after its warm-up: about half an hour on the 2-core development machine
(BENCH_P4_REQUESTS makes it shorter)."""

import asyncio

from bench import p1_dashboard, p2_ingestion, p3_wallet_debits, p4_memory, p6_fanout, p7_reseller_usage
from bench.common import exit_on_sigterm

exit_on_sigterm()
for benchmark in (p1_dashboard, p2_ingestion, p3_wallet_debits, p4_memory, p6_fanout, p7_reseller_usage):
    asyncio.run(benchmark.main())
