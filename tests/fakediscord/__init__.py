"""A fake Discord for end-to-end tests of the bot with the real discord.py client (see server.py)."""

from .client import run_client
from .recording import Recorded, UploadedFile
from .server import FakeDiscord, FakeInteraction

__all__ = ["FakeDiscord", "FakeInteraction", "Recorded", "UploadedFile", "run_client"]
