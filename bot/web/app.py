"""The painter's web server: the page, its picture, and the one request that queues a job.

GET never changes anything (link previews and crawlers fetch URLs); only the POST of the page's form
uses a link up, and it goes through ``Rules.admit`` and the router like ``/inpaint``: the same
channels, caps, NSFW policy and permissions, and the result is posted in the channel, mentioning the
member. Every refusal is an HTML page that says why, and nothing is queued.
"""

from __future__ import annotations

import asyncio
import io
import logging
import warnings
from collections import Counter
from typing import Any

import discord
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from bot.config import BotConfig
from bot.delivery.router import DeliveryRouter
from bot.errors import BotError
from bot.options import check_model
from bot.replies import error_message
from bot.rules import Rules, page_asker
from bot.store.database import Store
from bot.store.models import PainterLink
from bot.store.painter import claim_link, release_link
from bot.store.presets import SERVER_PREFIX, resolve_settings, visible_presets
from bot.web.links import USED, LinkError, Links, PageError
from bot.web.pages import (
    CONTENT_TYPES,
    HEADERS,
    STATIC,
    Form,
    html,
    message_page,
    painter_page,
    static_file,
)
from bot.web.pages import refused as refused_page
from engine.errors import EngineError
from engine.images import load_image
from engine.job import InpaintRequest
from engine.masks.points import OFF_MESSAGE
from engine.settings import InpaintSettings

log = logging.getLogger(__name__)

# A mask is one picture; even 40 MP of noise fits. The form's fields are tiny.
MAX_BODY_BYTES = 32 * 1024 * 1024
HEALTH_TEXT = "inpaintbot painter"
MAX_SELECTIONS = 60  # Select clicks one link may make
# The painted mask replaces these: they say where to repaint in other ways, or how to show the mask.
# Left out of a link's settings, and of the presets a submission names (or that apply by default).
MASK_SOURCES = ("mask_prompt", "mask_pick", "auto_mask", "preview_mask", "invert_mask")
BUSY_SELECTING = "Wait for the last selection to show before selecting again."
# Formats every browser shows as they are; others are sent as PNG.
BROWSER_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404s and 405s get the headers too
        response = exc
    except Exception as exc:  # a bug: a page with the error's id (its traceback is in the log)
        response = refused_page(error_message(exc), 500)
    response.headers.update(HEADERS)
    return response


def base_app() -> web.Application:
    """The headers and the body limit every answer gets, and ``/health`` (``inpaintbot check`` asks
    it through the operator's public address)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_headers])
    app.router.add_get("/health", _health)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.Response(text=HEALTH_TEXT)


class PainterServer:
    """The painter's pages for the links ``links`` issues; jobs go to ``rules`` and ``router``."""

    def __init__(
        self,
        client: discord.Client,
        config: BotConfig,
        store: Store,
        rules: Rules,
        router: DeliveryRouter,
        links: Links,
    ) -> None:
        self.client = client
        self.config = config
        self.store = store
        self.rules = rules
        self.router = router
        self.links = links
        self.queue = router.queue
        self._runner: web.AppRunner | None = None
        self._selections: Counter[str] = Counter()  # Select clicks per link (each is a model call)
        self._selecting: set[int] = set()  # members whose click is being answered: one at a time

    def app(self) -> web.Application:
        app = base_app()
        app.router.add_get("/painter/{name}", self._static)
        app.router.add_get("/paint/{token}", self._page)
        app.router.add_get("/paint/{token}/picture", self._picture)
        app.router.add_post("/paint/{token}", self._submit)
        app.router.add_post("/paint/{token}/select", self._select)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)  # URLs are keys: not logged
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.web_host, self.config.web_port)
        await site.start()
        log.info(
            "the painter listens on %s:%s for %s",
            self.config.web_host,
            self.port,
            self.config.public_url,
        )

    @property
    def port(self) -> int | None:
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # Routes

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        content_type = CONTENT_TYPES[name[name.rindex(".") :]]
        return web.Response(body=static_file(name), content_type=content_type, charset="utf-8")

    async def _page(self, request: web.Request) -> web.Response:
        try:
            link = await self._open(request)
            picture = await self._picture_bytes(link)
            size = (await asyncio.to_thread(self._decode_picture, picture)).size
        except (BotError, EngineError) as exc:
            return _refusal(exc)
        settings = InpaintSettings.model_validate(link.settings)
        presets = await visible_presets(self.store, link.user_id, link.guild_id)
        names = [p.name if p.guild_id is None else f"{SERVER_PREFIX}{p.name}" for p in presets]
        form = Form(settings.prompt, settings.negative_prompt, settings.strength, names)
        token = request.match_info["token"]
        page = painter_page(f"/paint/{token}", size, form, select=self.config.selects_objects)
        return html(page)

    async def _picture(self, request: web.Request) -> web.Response:
        try:
            link = await self._open(request)
            data = await self._picture_bytes(link)
        except (BotError, EngineError) as exc:
            return _refusal(exc)
        body, content_type = await asyncio.to_thread(self._for_browser, data)
        return web.Response(body=body, content_type=content_type)

    async def _select(self, request: web.Request) -> web.Response:
        """The Select tool: the mask of the thing clicked, as a PNG; a refusal is plain text the
        page shows. Each click is a model call beside everyone's submissions: a link gets a few."""
        try:
            link = await self._open(request)
            if not self.config.selects_objects:
                raise BotError(OFF_MESSAGE)
            if self._selections[link.id] >= MAX_SELECTIONS:
                raise BotError(f"This link has selected {MAX_SELECTIONS} times; paint the rest.")
            if link.user_id in self._selecting:
                raise PageError(BUSY_SELECTING, 429)
            self._selections[link.id] += 1
            self._selecting.add(link.user_id)
            try:
                point = _point(await request.json())
                picture = await self._picture_bytes(link)
                mask = await self.queue.select_object(picture, point)
            finally:
                self._selecting.discard(link.user_id)
        except (BotError, EngineError) as exc:
            status = exc.status if isinstance(exc, PageError) else 400
            return web.Response(text=str(exc), status=status)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            return web.Response(text="The click could not be read; try again.", status=400)
        return web.Response(body=mask, content_type="image/png")

    async def _submit(self, request: web.Request) -> web.Response:
        """Checks everything that needs no claim first; then uses the link up, and gives it back if
        the job is refused after all (the member may fix what was wrong and send it again)."""
        try:
            link = await self._open(request)
            fields = await _form(request)
            picture = await self._picture_bytes(link)
            size = (await asyncio.to_thread(self._decode_picture, picture)).size
            mask = await asyncio.to_thread(self._mask, fields.get("mask"), size)
        except (BotError, EngineError) as exc:
            return _refusal(exc)
        if not await claim_link(self.store, link.id):
            return refused_page(USED, 410)
        try:
            asker = await page_asker(self.client, link.user_id, link.guild_id, link.channel_id)
            admission = await self.rules.admit(asker)
            settings = await self._settings(link, fields, admission.guild)
            check_model(settings.model, self.config.allowed_models())
            job = InpaintRequest(image=picture, mask=mask, settings=settings)
            queued = await self.router.submit(admission, job, None, parent_id=link.job_id)
        except Exception as exc:
            await release_link(self.store, link.id)
            return refused_page(error_message(exc), 400 if _own_mistake(exc) else 500)
        where = (
            "in the server's channel" if link.guild_id is not None else "in your messages with the bot"
        )
        message = (
            f"Job {queued.job_id} is queued (position {queued.position}). The result will be "
            f"posted {where}, mentioning you. You can close this page."
        )
        return html(message_page("Queued", message, back=_channel_url(link)))

    # Parts

    async def _open(self, request: web.Request) -> PainterLink:
        link = await self.links.open(request.match_info["token"])
        if link.used_at is not None:
            raise LinkError(USED, 410)
        return link

    async def _picture_bytes(self, link: PainterLink) -> bytes:
        try:
            return await asyncio.to_thread(self.store.files.read, link.image_sha256)
        except FileNotFoundError:
            raise BotError(
                "The picture of this link was cleaned up on the bot's side; open the painter again "
                "from Discord."
            ) from None

    def _decode_picture(self, data: bytes) -> Image.Image:
        """As the engine sees it (EXIF orientation applied, as browsers apply it too)."""
        return load_image(data, max_pixels=self.config.max_pixels)

    def _for_browser(self, data: bytes) -> tuple[bytes, str]:
        with Image.open(io.BytesIO(data)) as picture:
            content_type = BROWSER_FORMATS.get(picture.format or "")
        if content_type is not None:
            return data, content_type
        out = io.BytesIO()
        self._decode_picture(data).save(out, "PNG")
        return out.getvalue(), "image/png"

    def _mask(self, field: object, size: tuple[int, int]) -> bytes:
        """The painted mask as a grey PNG (white = repaint), once it is known to be exactly the
        picture's size: the page draws on the picture's own pixels, so any other size is not ours."""
        if not isinstance(field, web.FileField):
            raise BotError("The page sent no mask. Paint the area to repaint, then press Paint.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                painted = Image.open(field.file, formats=["PNG"])
                if painted.size != size:  # from the header: a wrong size costs no decoding
                    raise BotError(
                        f"The mask is {painted.width}x{painted.height} but the picture is "
                        f"{size[0]}x{size[1]}: it must be exactly the picture's size."
                    )
                painted.load()
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, Warning):
            raise BotError("The mask the page sent is not a PNG picture; paint it again.") from None
        out = io.BytesIO()
        # Grey levels, alpha dropped: the page paints white on black.
        painted.convert("RGB").convert("L").save(out, "PNG")
        return out.getvalue()

    async def _settings(self, link: PainterLink, fields: dict[str, Any], guild: Any) -> InpaintSettings:
        """The form's prompt, negative prompt and strength, over the link's settings or the preset
        the member picked (whose other settings then replace the link's)."""
        values: dict[str, Any] = {
            "prompt": _text(fields, "prompt"),
            "negative_prompt": _text(fields, "negative_prompt"),
            "strength": _number(fields, "strength"),
        }
        preset = _text(fields, "preset").strip()
        if preset:
            return await resolve_settings(
                self.store,
                user_id=link.user_id,
                guild=guild,
                preset=preset,
                options=values,
                leave_out=MASK_SOURCES,
            )
        given = {key: value for key, value in values.items() if value is not None}
        return InpaintSettings.parse(**{**link.settings, **given})


async def _form(request: web.Request) -> dict[str, Any]:
    try:
        return dict(await request.post())
    except web.HTTPRequestEntityTooLarge:
        raise PageError(
            f"The page sent more than {MAX_BODY_BYTES // 2**20} MB; this bot takes no more.", 413
        ) from None
    except ValueError:
        raise BotError("The page's form could not be read; send it again.") from None


def _point(data: object) -> tuple[float, float]:
    if not isinstance(data, dict):
        raise BotError("The click could not be read; try again.")
    try:
        return float(data["x"]), float(data["y"])
    except (KeyError, TypeError, ValueError):
        raise BotError("The click could not be read; try again.") from None


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name, "")
    return value if isinstance(value, str) else ""


def _number(fields: dict[str, Any], name: str) -> float | None:
    text = _text(fields, name).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise BotError(f"{name.capitalize()} must be a number (got {text!r}).") from None


def _own_mistake(exc: Exception) -> bool:
    return isinstance(exc, BotError | EngineError)


def _refusal(exc: BotError | EngineError) -> web.Response:
    return refused_page(str(exc), exc.status if isinstance(exc, PageError) else 400)


def _channel_url(link: PainterLink) -> str:
    return f"https://discord.com/channels/{link.guild_id or '@me'}/{link.channel_id}"
