"""Painter links: signed over what their row binds them to, expiring, keyed by a kept secret."""

import asyncio
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import update

from bot.config import BotConfig
from bot.errors import BotError
from bot.store.database import Store
from bot.store.models import PainterLink
from bot.store.painter import claim_link, forget_expired_links, get_link, release_link
from bot.web.links import LINK_SECONDS, SECRET_FILE, LinkError, Links, load_secret
from tests.pictures import photo, png_bytes

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def links(store: Store, clock: Clock) -> Links:
    return Links(store, b"k" * 32, "https://paint.example.org/", clock)


async def issue(links: Links, **overrides: object) -> str:
    values: dict[str, object] = {
        "user_id": 11,
        "guild_id": 22,
        "channel_id": 33,
        "image": png_bytes(photo(32, 24)),
        "settings": {"prompt": "a hat"},
    } | overrides
    url, expires = await links.issue(**values)  # type: ignore[arg-type]
    assert expires == int(NOW) + LINK_SECONDS
    assert url.startswith("https://paint.example.org/paint/")
    return url.rsplit("/", 1)[1]


async def test_a_link_opens_its_row_until_it_expires(links: Links, clock: Clock) -> None:
    token = await issue(links)
    link = await links.open(token)
    assert (link.user_id, link.guild_id, link.channel_id) == (11, 22, 33)
    assert link.settings == {"prompt": "a hat"} and link.used_at is None
    clock.now = NOW + LINK_SECONDS - 1
    await links.open(token)
    clock.now = NOW + LINK_SECONDS
    with pytest.raises(LinkError, match="expired") as refused:
        await links.open(token)
    assert refused.value.status == 410


@pytest.mark.parametrize("part", [0, 1, 2])
async def test_any_changed_part_of_the_token_is_refused(links: Links, part: int) -> None:
    token = await issue(links)
    pieces = token.split(".")
    changed = pieces[part]
    changed = changed[:-1] + ("1" if changed[-1] != "1" else "2")
    pieces[part] = changed
    with pytest.raises(LinkError, match="not valid") as refused:
        await links.open(".".join(pieces))
    assert refused.value.status == 403


@pytest.mark.parametrize("column", ["user_id", "guild_id", "channel_id", "image_sha256", "expires_at"])
async def test_the_signature_binds_the_member_the_channel_the_picture_and_the_expiry(
    links: Links, store: Store, column: str
) -> None:
    """A row changed behind the link's back (or a link of another row) does not open."""
    token = await issue(links)
    changed: object = {
        "user_id": 12,
        "guild_id": 23,
        "channel_id": 34,
        "image_sha256": "0" * 64,
        "expires_at": datetime.fromtimestamp(NOW + 2 * LINK_SECONDS, UTC),
    }[column]
    async with store.sessions.begin() as session:
        await session.execute(update(PainterLink).values({column: changed}))
    with pytest.raises(LinkError, match="not valid"):
        await links.open(token)


async def test_another_secret_opens_nothing(links: Links, store: Store, clock: Clock) -> None:
    token = await issue(links)
    other = Links(store, b"x" * 32, links.public_url, clock)
    with pytest.raises(LinkError, match="not valid"):
        await other.open(token)
    for garbage in ("", "x", "../../etc/passwd", token + "x"):
        with pytest.raises(LinkError, match="not valid"):
            await links.open(garbage)


async def test_a_link_is_claimed_once_and_a_refused_submission_gives_it_back(
    links: Links, store: Store
) -> None:
    link_id = (await issue(links)).split(".")[0]
    assert await claim_link(store, link_id)
    assert not await claim_link(store, link_id)
    stored = await get_link(store, link_id)
    assert stored is not None and stored.used_at is not None
    await release_link(store, link_id)
    assert await claim_link(store, link_id)


def test_the_secret_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    config = BotConfig(data_dir=tmp_path / "data", _env_file=None)
    secret = load_secret(config)
    path = config.data_dir / SECRET_FILE
    assert len(secret) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(config) == secret  # a restart keeps the links valid
    assert load_secret(BotConfig(data_dir=tmp_path / "other", _env_file=None)) != secret


def test_the_operators_secret_wins_and_is_never_shown(tmp_path: Path) -> None:
    config = BotConfig(
        data_dir=tmp_path / "data", painter_secret=SecretStr("the operator's own secret"), _env_file=None
    )
    assert load_secret(config) == b"the operator's own secret"
    assert not (config.data_dir / SECRET_FILE).exists()
    assert "the operator's own secret" not in repr(config) and "the operator's own secret" not in str(
        config
    )


def test_the_public_url_turns_the_painter_on(tmp_path: Path) -> None:
    assert not BotConfig(_env_file=None).painter_on
    config = BotConfig(public_url="https://paint.example.org/", _env_file=None)
    assert config.painter_on and config.public_url == "https://paint.example.org"
    with pytest.raises(ValueError, match="must start with https://"):
        BotConfig(public_url="paint.example.org", _env_file=None)


async def test_expired_links_are_forgotten_and_stay_refused(
    links: Links, store: Store, clock: Clock
) -> None:
    old = await issue(links)
    clock.now = NOW + LINK_SECONDS  # the old link has just expired; a new one is issued
    url, _ = await links.issue(
        user_id=11, guild_id=22, channel_id=33, image=png_bytes(photo(8, 8)), settings={}
    )
    cutoff = datetime.fromtimestamp(NOW + LINK_SECONDS + 1, UTC)
    assert await forget_expired_links(store, cutoff) == 1
    assert await get_link(store, old.split(".")[0]) is None
    with pytest.raises(LinkError, match="not valid"):
        await links.open(old)
    await links.open(url.rsplit("/", 1)[1])  # the newer one still opens


async def test_of_many_concurrent_claims_exactly_one_wins(links: Links, store: Store) -> None:
    """Two submissions of one page at once (a double click, a script) queue one job."""
    link_id = (await issue(links)).split(".")[0]
    claims = await asyncio.gather(*(claim_link(store, link_id) for _ in range(8)))
    assert sorted(claims) == [False] * 7 + [True]


def test_processes_starting_together_make_one_whole_secret(tmp_path: Path) -> None:
    config = BotConfig(data_dir=tmp_path / "data", _env_file=None)
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: load_secret(config), range(32)))
    assert len(set(made)) == 1 and len(made[0]) == 64
    assert [path.name for path in config.data_dir.iterdir()] == [SECRET_FILE]  # no drafts left


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_a_kept_secret_without_a_key_is_refused_not_used(tmp_path: Path, content: str) -> None:
    """An empty key would sign links with nothing (an older version that stopped between making the
    file and writing it left one)."""
    config = BotConfig(data_dir=tmp_path, _env_file=None)
    (tmp_path / SECRET_FILE).write_text(content)
    with pytest.raises(BotError, match=r"holds no key .* delete it"):
        load_secret(config)


def test_a_kept_secret_others_can_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = BotConfig(data_dir=tmp_path, _env_file=None)
    path = tmp_path / SECRET_FILE
    path.write_text("s" * 64)
    path.chmod(0o644)
    assert load_secret(config) == b"s" * 64
    assert "can be read by other users" in caplog.text and "s" * 64 not in caplog.text


def test_the_operators_secret_must_not_be_short_and_empty_means_unset(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        BotConfig(data_dir=tmp_path, painter_secret=SecretStr("hunter2"), _env_file=None)
    config = BotConfig(data_dir=tmp_path, painter_secret=SecretStr(" "), _env_file=None)
    assert config.painter_secret is None and len(load_secret(config)) == 64
