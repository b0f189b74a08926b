"""A process of its own that finalizes invoices concurrently, for the numbering test's second worker:
``python -m tests.finalize_many DATABASE_URL ID,ID,...`` prints the numbers they took, in order."""

from __future__ import annotations

import asyncio
import sys

from tortoise import Tortoise

from billing.documents import invoices
from whitebill import db


async def main(url: str, ids: list[int]) -> None:
    await db.connect(url)
    try:
        finalized = await asyncio.gather(*(invoices.finalize(invoice_id) for invoice_id in ids))
        print(",".join(str(invoice.number) for invoice in finalized), flush=True)
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(part) for part in sys.argv[2].split(",")]))
