"""A server's NSFW policy (``/server nsfw``), applied where results go out.

Pictures the safety checker flagged are posted, spoilered or withheld according to the policy;
age-restricted channels are exempt. Where jobs come in, the rules are ``bot.rules``'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.store import jobs
from bot.store.database import Store
from bot.store.guilds import get_guild_settings
from bot.store.models import ImageRole, NsfwPolicy
from bot.uploads import FittedFile


def age_restricted(channel: object) -> bool:
    """Age-restricted channels (and threads in them) show flagged pictures as they are."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


@dataclass(frozen=True)
class Screening:
    """How a result's pictures are shown, by their position among the job's outputs."""

    spoilered: frozenset[int] = frozenset()
    withheld: frozenset[int] = frozenset()

    def apply(self, files: Sequence[FittedFile]) -> list[FittedFile]:
        """``files`` in output order; the ones to post, spoilers marked."""
        return [
            replace(file, spoiler=True) if position in self.spoilered else file
            for position, file in enumerate(files)
            if position not in self.withheld
        ]

    @property
    def note(self) -> str:
        """A sentence for the result message when pictures were withheld, else empty."""
        count = len(self.withheld)
        if not count:
            return ""
        pictures = "1 picture was" if count == 1 else f"{count} pictures were"
        return f"🔞 {pictures} withheld by this server's NSFW policy."


async def screen(store: Store, job_id: int, channel: object) -> Screening:
    """What the job's server policy makes of its flagged pictures in ``channel``. The policy is read
    now, so a changed policy applies to every later post, re-posts included."""
    if age_restricted(channel):
        return Screening()
    job = await jobs.get_job(store, job_id)
    if job is None or job.guild_id is None:
        return Screening()
    flagged = frozenset(link.position for link in job.images_with(ImageRole.OUTPUT) if link.nsfw)
    if not flagged:
        return Screening()
    policy = (await get_guild_settings(store, job.guild_id)).nsfw_policy
    if policy is NsfwPolicy.SPOILER:
        return Screening(spoilered=flagged)
    if policy is NsfwPolicy.BLOCK:
        return Screening(withheld=flagged)
    return Screening()
