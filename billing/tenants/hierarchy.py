"""Resellers of resellers: a partner's place in its chain up to the platform.

A chain is short (WHITEBILL_MAX_PARTNER_LEVELS, at most 3 levels below the platform), so walking it up one
row at a time costs at most three lookups.
"""

from __future__ import annotations

from models.tenancy import Partner


async def ancestry(partner_id: int) -> list[int]:
    """The chain from the platform's direct partner down to ``partner_id`` itself, in that order."""
    chain = [partner_id]
    parent = (await Partner.get(id=partner_id)).parent_id
    while parent is not None:
        chain.append(parent)
        parent = (await Partner.get(id=parent)).parent_id
    return chain[::-1]
