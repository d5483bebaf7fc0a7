"""Links to the mask painter in the database: issued with their picture, used up by one submission.

Claiming is one conditional UPDATE (``WHERE used_at IS NULL``), so of two submissions racing on one
link exactly one wins, and the claim survives a restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, update

from bot.store.database import Store
from bot.store.jobs import add_image
from bot.store.models import PainterLink, utcnow


async def create_link(
    store: Store,
    *,
    link_id: str,
    user_id: int,
    guild_id: int | None,
    channel_id: int,
    image: bytes,
    settings: dict[str, Any],
    expires_at: datetime,
    job_id: int | None = None,
) -> PainterLink:
    """Store the picture (so the page can show it after a restart) and the link's row."""
    async with store.files.lock, store.sessions.begin() as session:
        picture = await add_image(session, store.files, image)
        link = PainterLink(
            id=link_id,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            image_sha256=picture.sha256,
            settings=settings,
            job_id=job_id,
            expires_at=expires_at,
        )
        session.add(link)
    return link


async def get_link(store: Store, link_id: str) -> PainterLink | None:
    async with store.sessions() as session:
        return await session.get(PainterLink, link_id)


async def claim_link(store: Store, link_id: str) -> bool:
    """Use the link up; False when it was used already."""
    async with store.sessions.begin() as session:
        result = await session.execute(
            update(PainterLink)
            .where(PainterLink.id == link_id, PainterLink.used_at.is_(None))
            .values(used_at=utcnow())
        )
    return bool(getattr(result, "rowcount", 0))


async def release_link(store: Store, link_id: str) -> None:
    """Give a claimed link back: its submission was refused before anything was queued, so the
    member may fix what was wrong and send it again."""
    async with store.sessions.begin() as session:
        await session.execute(update(PainterLink).where(PainterLink.id == link_id).values(used_at=None))


async def forget_expired_links(store: Store, before: datetime) -> int:
    """Delete the rows of links that expired before ``before``; how many. A link without its row
    opens nothing, so forgetting one can never make it work again."""
    async with store.sessions.begin() as session:
        result = await session.execute(delete(PainterLink).where(PainterLink.expires_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
