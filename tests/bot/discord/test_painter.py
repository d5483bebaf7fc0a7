"""The mask painter end to end: links from Discord, the page in a real headless Chromium (Debian's,
through Playwright), the job through the rules and the queue, the result posted in the channel.

Screenshots go to the test's temporary folder; ``INPAINTBOT_SCREENSHOTS=docs`` writes the README's
copies (docs/painter-desktop.png, docs/painter-phone.png) instead.
"""

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image
from playwright.async_api import Browser, Page
from sqlalchemy import func, select

from bot.client import InpaintBot
from bot.store import jobs
from bot.store.database import Store
from bot.store.guilds import update_guild_settings
from bot.store.models import ImageRole, Job
from bot.store.presets import save_preset
from bot.ui.buttons import PAINTER_OFF
from bot.web.app import MAX_BODY_BYTES
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import EPHEMERAL, JOB_TIMEOUT, has_result, inpaint, result
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded
from tests.pictures import astronaut, png_bytes
from tests.support.browser import BrowserThread
from tests.support.known_boxes import KnownBoxes
from tests.support.servers import free_port

WIDTH, HEIGHT = 384, 256
REPO = Path(__file__).resolve().parents[3]
# Where the strokes go, in the picture's pixels: a brush stroke and a rectangle.
STROKE = ((40.0, 60.0), (180.0, 88.0))
BRUSH = 30  # the size slider, in screen pixels
RECT = (240.0, 140.0, 340.0, 220.0)
# The astronaut, cut to 3:2 with her head in it.
PICTURE = astronaut().crop((0, 0, 512, 341)).resize((WIDTH, HEIGHT))


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    thread = BrowserThread()
    yield thread
    thread.close()


def screenshots(tmp_path: Path) -> Path:
    chosen = os.environ.get("INPAINTBOT_SCREENSHOTS")
    return REPO / chosen if chosen else tmp_path


async def start_painter(start_bot: StartBot, **overrides: Any) -> InpaintBot:
    port = free_port()
    return await start_bot(public_url=f"http://127.0.0.1:{port}", web_port=port, **overrides)


async def painter_link(fake: FakeDiscord, it: FakeInteraction) -> tuple[str, Recorded]:
    """The private answer with its "Open the painter" button, and the button's URL."""
    record = await fake.wait_for("followup", lambda r: it.owns(r) and r.json["flags"] & EPHEMERAL)
    (row,) = record.json["components"]
    (button,) = row["components"]
    assert button["label"] == "Open the painter" and button["style"] == 5  # a link button
    return button["url"], record


async def paint_command(fake: FakeDiscord, **kwargs: Any) -> str:
    picture = fake.add_attachment(png_bytes(PICTURE), "astronaut.png")
    it = await fake.slash("paint", {"image": picture}, **kwargs)
    url, _ = await painter_link(fake, it)
    return url


async def job_count(store: Store) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def stored_job(store: Store, job_id: int) -> Job:
    row = await jobs.get_job(store, job_id)
    assert row is not None
    return row


async def stored_mask(store: Store, job: Job) -> np.ndarray:
    data = await jobs.job_picture(store, job, ImageRole.MASK)
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)


# -- In the browser ------------------------------------------------------------------------------------


async def ready(page: Page, url: str) -> dict[str, Any]:
    """Open the painter and wait for the picture; the response's headers, lower-cased."""
    response = await page.goto(url)
    assert response is not None and response.status == 200, await page.content()
    await page.wait_for_selector("#painter[data-ready=true]", state="attached")
    return dict(response.headers)


async def to_screen(page: Page) -> Any:
    """Picture pixels → page coordinates, from the view's camera as the page last drew it."""
    await page.wait_for_function("document.getElementById('view').dataset.camera")
    camera = json.loads(await page.get_attribute("#view", "data-camera") or "{}")
    box = await page.locator("#view").bounding_box()
    assert box is not None

    def screen(x: float, y: float) -> tuple[float, float]:
        return box["x"] + camera["left"] + x * camera["scale"], box["y"] + camera["top"] + y * camera[
            "scale"
        ]

    return screen, camera["scale"]


async def draw(page: Page) -> float:
    """A brush stroke and a rectangle with the mouse's pointer events; the brush's width in picture
    pixels."""
    await page.locator("#size").fill(str(BRUSH))
    screen, scale = await to_screen(page)
    (x0, y0), (x1, y1) = STROKE
    await page.mouse.move(*screen(x0, y0))
    await page.mouse.down()
    await page.mouse.move(*screen(x1, y1), steps=12)
    await page.mouse.up()
    await page.click("[data-tool=rect]")
    await page.mouse.move(*screen(RECT[0], RECT[1]))
    await page.mouse.down()
    await page.mouse.move(*screen(RECT[2], RECT[3]), steps=6)
    await page.mouse.up()
    return BRUSH / scale


async def paint_and_send(browser: Browser, url: str, shots: Path) -> dict[str, Any]:
    """Phone first (its screenshot: opening a link changes nothing), then the desktop, which sends."""
    phone = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = await phone.new_page()
    await ready(page, url)
    await draw(page)
    await page.screenshot(path=str(shots / "painter-phone.png"), full_page=True)
    await phone.close()

    desktop = await browser.new_context(viewport={"width": 1280, "height": 760})
    page = await desktop.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    headers = await ready(page, url)
    prefilled = await page.input_value("textarea[name=prompt]")
    width = await draw(page)
    await page.fill("textarea[name=prompt]", "a red kite")
    await page.screenshot(path=str(shots / "painter-desktop.png"))
    async with page.expect_navigation():
        await page.click("#paint")
    answer = await page.inner_text("main")
    await desktop.close()
    return {
        "headers": headers,
        "prefilled": prefilled,
        "brush": width,
        "answer": answer,
        "problems": problems,
    }


async def page_text(browser: Browser, url: str) -> tuple[int, str]:
    context = await browser.new_context()
    page = await context.new_page()
    response = await page.goto(url)
    assert response is not None
    text = await page.inner_text("body")
    await context.close()
    return response.status, text


async def send_wrong_size(browser: Browser, url: str) -> tuple[int, str]:
    """The page's own form, sent with a mask that is not the picture's size."""
    context = await browser.new_context()
    page = await context.new_page()
    await ready(page, url)
    wrong = png_bytes(Image.new("L", (WIDTH // 2, HEIGHT // 2), 255))
    await page.set_input_files(
        "#mask", files=[{"name": "mask.png", "mimeType": "image/png", "buffer": wrong}]
    )
    async with page.expect_navigation() as navigation:
        await page.evaluate("document.getElementById('form').submit()")
    response = await navigation.value
    assert response is not None
    text = await page.inner_text("body")
    await context.close()
    return response.status, text


async def paint_stroke_and_send(browser: Browser, url: str) -> str:
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    page = await context.new_page()
    await ready(page, url)
    await draw(page)
    async with page.expect_navigation():
        await page.click("#paint")
    text = await page.inner_text("main")
    await context.close()
    return text


# -- Over plain HTTP (what a second submit or a scripted client would send) ------------------------------


async def post_mask(url: str, mask: Image.Image | None = None, **fields: str) -> tuple[int, str]:
    form = aiohttp.FormData()
    for name, value in {"prompt": "", "negative_prompt": "", "strength": "0.75", **fields}.items():
        form.add_field(name, value)
    painted = mask if mask is not None else box_mask()
    form.add_field("mask", png_bytes(painted), filename="mask.png", content_type="image/png")
    async with aiohttp.ClientSession() as session, session.post(url, data=form) as response:
        return response.status, await response.text()


def box_mask(width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, width // 2, height // 2))
    return mask


# -- The tests -------------------------------------------------------------------------------------------


def covers_exactly(mask: np.ndarray, brush: float) -> None:
    """White over the stroke and the rectangle, black elsewhere, give or take the antialiased edge."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5  # pixel centres
    (ax, ay), (bx, by) = STROKE
    t = np.clip(
        ((xx - ax) * (bx - ax) + (yy - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2), 0, 1
    )
    stroke = np.hypot(xx - (ax + t * (bx - ax)), yy - (ay + t * (by - ay)))
    x0, y0, x1, y1 = RECT
    outside_rect = np.maximum.reduce([x0 - xx, xx - x1, y0 - yy, yy - y1])  # > 0 outside, by that much
    edge = 1.5
    inside = (stroke <= brush / 2 - edge) | (outside_rect <= -edge)
    outside = (stroke >= brush / 2 + edge) & (outside_rect >= edge)
    assert inside.sum() > 1500 and outside.sum() > 15000
    assert mask[inside].min() >= 200, "a painted pixel is missing from the mask"
    assert mask[outside].max() <= 40, "the mask covers pixels that were not painted"


async def test_a_member_paints_in_the_browser_and_the_result_is_posted_in_the_channel(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store, browser: BrowserThread, tmp_path: Path
) -> None:
    await start_painter(start_bot)
    assert "paint" in {command["name"] for command in fake_discord.commands[None]}
    url = await paint_command(fake_discord)
    assert url.startswith("http://127.0.0.1:")
    shots = screenshots(tmp_path)
    seen = await browser.run(paint_and_send(browser.browser, url, shots))

    assert seen["problems"] == []  # no script errors, nothing the CSP blocked
    headers = seen["headers"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "set-cookie" not in headers
    assert seen["prefilled"] == ""  # /paint starts from the member's defaults: no prompt
    assert "Job 1 is queued" in seen["answer"] and "mentioning you" in seen["answer"]
    for name in ("painter-phone.png", "painter-desktop.png"):
        assert Image.open(shots / name).size[0] in (1280, 780)

    job = await stored_job(store, 1)
    alice = fake_discord.alice["user"]["id"]
    assert (job.user_id, job.channel_id) == (int(alice), int(fake_discord.channel["id"]))
    assert job.inpaint_settings().prompt == "a red kite"
    covers_exactly(await stored_mask(store, job), seen["brush"])

    posted = await fake_discord.wait_for("post_message", has_result, timeout=JOB_TIMEOUT)
    assert posted.params["channel_id"] == fake_discord.channel["id"]
    assert posted.json["content"].startswith(f"<@{alice}> done")
    assert [f.filename for f in posted.files] == [f"inpaint-1-{job.inpaint_settings().seed}.png"]


async def test_refused_links_and_masks_get_a_clear_page_and_queue_nothing(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store, browser: BrowserThread
) -> None:
    bot = await start_painter(start_bot)
    assert bot.painter is not None
    links = bot.painter.links
    url = await paint_command(fake_discord)

    forged = url[:-1] + ("A" if url[-1] != "A" else "B")
    status, text = await browser.run(page_text(browser.browser, forged))
    assert status == 403 and "This painter link is not valid" in text

    links.clock = lambda: time.time() + 15 * 60 + 1  # past the link's 15 minutes
    status, text = await browser.run(page_text(browser.browser, url))
    assert status == 410 and "has expired" in text
    assert (await post_mask(url))[0] == 410
    links.clock = time.time

    status, text = await browser.run(send_wrong_size(browser.browser, url))
    assert status == 400
    assert f"The mask is {WIDTH // 2}x{HEIGHT // 2} but the picture is {WIDTH}x{HEIGHT}" in text
    status, text = await post_mask(url, prompt="x" * (MAX_BODY_BYTES + 1))
    assert status == 413 and "The page sent more than 32 MB" in text
    status, text = await post_mask(url, Image.new("L", (WIDTH, HEIGHT), 0))
    assert status == 400 and "The mask is empty" in text
    assert await job_count(store) == 0

    # A refused submission does not use the link up; the first accepted one does.
    answer = await browser.run(paint_stroke_and_send(browser.browser, url))
    assert "Job 1 is queued" in answer
    status, text = await browser.run(page_text(browser.browser, url))
    assert status == 410 and "was used already" in text
    status, text = await post_mask(url)
    assert status == 410 and "was used already" in text
    assert await job_count(store) == 1


async def test_the_page_follows_the_servers_rules_like_inpaint(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store, gated_engine: GatedEngine
) -> None:
    await start_painter(start_bot, queue_max_per_user=1)
    url = await paint_command(fake_discord)
    second = await paint_command(fake_discord)
    other = fake_discord.add_channel("art")
    # The server allows jobs in #art only, after the link was made: the page is refused.
    await update_guild_settings(
        store, int(fake_discord.guild_id), allowed_channel_ids=[int(other["id"])]
    )
    status, text = await post_mask(url)
    assert status == 400 and "Jobs don&#x27;t run in this channel" in text
    assert await job_count(store) == 0

    # Allowed again, the same link works (the refusal did not use it up).
    await update_guild_settings(store, int(fake_discord.guild_id), allowed_channel_ids=[])
    gated_engine.gate.clear()  # the job waits at the engine: alice has one pending
    status, text = await post_mask(url, prompt="a lighthouse")
    assert status == 200 and "Job 1 is queued" in text
    assert (await stored_job(store, 1)).inpaint_settings().prompt == "a lighthouse"

    # One job per member at a time: her second link is refused while the first job is pending.
    status, text = await post_mask(second)
    assert status == 400 and "You already have 1 job waiting or running" in text
    assert await job_count(store) == 1
    gated_engine.gate.set()
    await fake_discord.wait_for("post_message", has_result, timeout=JOB_TIMEOUT)


async def test_a_preset_picked_on_the_page_cannot_replace_or_invert_the_painted_mask(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    """A preset saved with a face mask, an inverted mask and a mask preview keeps its prompt and
    sampling on the page; where to repaint is what the member painted."""
    await start_painter(start_bot)
    alice = int(fake_discord.alice["user"]["id"])
    masked = InpaintSettings.parse(
        prompt="from the preset", steps=7, auto_mask="face", invert_mask=True, preview_mask=True
    )
    await save_preset(store, alice, "faces", masked, max_per_user=25)
    url = await paint_command(fake_discord)
    status, text = await post_mask(url, preset="faces")
    assert status == 200 and "Job 1 is queued" in text
    settings = (await stored_job(store, 1)).inpaint_settings()
    assert settings.steps == 7
    assert (settings.auto_mask, settings.invert_mask, settings.preview_mask) == (None, False, None)
    mask = await stored_mask(store, await stored_job(store, 1))
    assert np.array_equal(mask, np.asarray(box_mask(), dtype=np.float64))
    await fake_discord.wait_for("post_message", has_result, timeout=JOB_TIMEOUT)


async def test_inpaint_without_a_mask_offers_the_painter_and_results_get_a_paint_button(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_painter(start_bot)
    it = await inpaint(fake_discord, mask=False, prompt="a blue door")
    url, offer = await painter_link(fake_discord, it)
    assert "Nothing says where to repaint" in offer.json["content"]
    assert it.original_id not in fake_discord.messages  # the public "thinking" message is gone
    assert await job_count(store) == 0
    status, text = await post_mask(url, box_mask(96, 64), prompt="a blue door")
    assert status == 200 and "Job 1 is queued" in text, text

    done = await fake_discord.wait_for("post_message", has_result, timeout=JOB_TIMEOUT)
    rows = done.json["components"]
    assert [c["custom_id"] for c in rows[1]["components"]] == [
        "job:paint:1",
        "job:zoom15:1",
        "job:zoom2:1",
    ]
    click = await fake_discord.click(done.reply, "job:paint:1", user=fake_discord.owner)
    url, _ = await painter_link(fake_discord, click)
    async with aiohttp.ClientSession() as session, session.get(url) as page:
        assert page.status == 200 and "a blue door" in await page.text()
    status, text = await post_mask(url, box_mask(96, 64), prompt="a green door")
    assert status == 200 and "Job 2 is queued" in text
    second = await stored_job(store, 2)
    assert (second.parent_id, second.user_id) == (1, int(fake_discord.owner["user"]["id"]))
    first_output = await jobs.job_picture(store, await stored_job(store, 1), ImageRole.OUTPUT)
    assert await jobs.job_picture(store, second, ImageRole.INPUT) == first_output


async def test_without_a_public_url_there_is_no_painter(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    bot = await start_bot()
    assert bot.painter is None
    assert "paint" not in {command["name"] for command in fake_discord.commands[None]}
    it = await inpaint(fake_discord)
    done = await result(fake_discord, it)
    shown = [c["custom_id"] for row in done.json["components"] for c in row["components"]]
    assert "job:paint:1" not in shown and "job:zoom15:1" in shown
    # A 🖌 Paint button posted while the painter was on (before a restart) says it is off now.
    assert it.original_id is not None
    paint = {"type": 2, "style": 2, "label": "Paint", "custom_id": "job:paint:1"}
    fake_discord.message(it.original_id)["components"].append({"type": 1, "components": [paint]})
    click = await fake_discord.click(it.original_id, "job:paint:1")
    answer = await fake_discord.wait_for("callback", click.owns)
    assert answer.json["data"]["flags"] & EPHEMERAL
    assert answer.json["data"]["content"] == PAINTER_OFF


# Two things the Select tool can find (``KnownBoxes``: a click selects the box around it).
HELMET = (60, 40, 160, 120)
ROCKET = (280, 20, 360, 200)


async def select_and_send(browser: Browser, url: str) -> tuple[list[str], str]:
    """Select the helmet and the rocket with clicks, take the rocket out again, and send."""
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    page = await context.new_page()
    await ready(page, url)
    tools = await page.eval_on_selector_all("[data-tool]", "els => els.map(e => e.dataset.tool)")
    screen, _ = await to_screen(page)
    for tool, box in (("select", HELMET), ("select", ROCKET), ("unselect", ROCKET)):
        await page.click(f"[data-tool={tool}]")
        hint = await page.inner_text("#hint")
        await page.mouse.click(*screen((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
        await page.wait_for_function(
            "previous => document.getElementById('hint').textContent !== previous"
            " && !document.getElementById('hint').textContent.startsWith('Looking')",
            arg=hint,
        )
    async with page.expect_navigation():
        await page.click("#paint")
    answer = await page.inner_text("main")
    await context.close()
    return tools, answer


async def test_a_click_selects_the_thing_under_it_when_the_mask_models_are_on(
    fake_discord: FakeDiscord,
    start_bot: StartBot,
    store: Store,
    browser: BrowserThread,
    gated_engine: GatedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    boxes = {"things": [(*HELMET, 0.9), (*ROCKET, 0.8)]}
    monkeypatch.setattr(gated_engine.engine, "word_finder", KnownBoxes(boxes))
    await start_painter(start_bot)
    url = await paint_command(fake_discord)
    # A click on nothing the finder knows says so (the page shows it), and changes nothing.
    status, text = await post_select(url, {"x": 10, "y": 240})
    assert status == 400 and "Nothing was found there" in text
    assert (await post_select(url, {"x": "left"}))[0] == 400
    tools, answer = await browser.run(select_and_send(browser.browser, url))
    assert {"select", "unselect"} <= set(tools)
    assert "Job 1 is queued" in answer
    mask = await stored_mask(store, await stored_job(store, 1))
    expected = np.zeros((HEIGHT, WIDTH))
    x0, y0, x1, y1 = HELMET
    expected[y0:y1, x0:x1] = 255
    assert np.abs(mask - expected).max() <= 1  # the helmet's outline exactly; the rocket taken out
    assert (await post_select(url, {"x": 100, "y": 80}))[0] == 410  # the link is used up


async def post_select(url: str, body: object) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/select", json=body) as answer:
        return answer.status, await answer.text()


async def test_without_the_mask_models_there_is_no_select_tool(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_painter(start_bot, mask_detector=None, mask_segmenter=None)
    url = await paint_command(fake_discord)
    async with aiohttp.ClientSession() as session, session.get(url) as page:
        text = await page.text()
    assert page.status == 200 and 'data-tool="brush"' in text and 'data-tool="select"' not in text
    status, answer = await post_select(url, {"x": 10, "y": 10})
    assert status == 400 and "turned off" in answer


# A triangle for the lasso, and an eraser stroke across its middle, in picture pixels.
TRIANGLE = ((80.0, 40.0), (300.0, 60.0), (180.0, 220.0))
ERASE = ((120.0, 90.0), (260.0, 90.0))


FINGER = (30.0, 230.0)  # where the first finger of a pinch touches, in picture pixels
PINCH = """([a, b]) => {
  const view = document.getElementById("view");
  const fire = (type, id, [x, y]) => view.dispatchEvent(new PointerEvent(type, {
    pointerId: id, pointerType: "touch", isPrimary: id === 1, clientX: x, clientY: y,
    button: type === "pointermove" ? -1 : 0, buttons: type === "pointerup" ? 0 : 1, bubbles: true,
  }));
  fire("pointerdown", 11, a);
  fire("pointermove", 11, [a[0] + 6, a[1] - 4]);  // the first finger moves a little: paint, for now
  fire("pointerdown", 12, b);
  for (let step = 1; step <= 5; step++) fire("pointermove", 12, [b[0] + 30 * step, b[1] + 10 * step]);
  fire("pointerup", 12, [b[0] + 150, b[1] + 50]);
  fire("pointerup", 11, a);
}"""


async def use_the_tools(browser: Browser, url: str) -> dict[str, Any]:
    """Zoom with the wheel, lasso a triangle, erase across it, undo and redo the eraser, invert, send;
    first an empty mask, which the page does not send."""
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    page = await context.new_page()
    await ready(page, url)
    await page.click("#paint")  # nothing painted yet
    empty_hint = await page.inner_text("#hint")
    screen, fitted = await to_screen(page)
    # Two fingers spread apart zoom in; the first finger's touch paints nothing (Playwright has no
    # multi-touch, so the page gets the pointer events a phone sends).
    await page.evaluate(PINCH, [screen(*FINGER), screen(WIDTH / 2, HEIGHT / 2)])
    await page.wait_for_function(
        "scale => JSON.parse(document.getElementById('view').dataset.camera).scale > scale * 1.2",
        arg=fitted,
    )
    await page.click("#fit")
    await page.mouse.move(*screen(WIDTH / 2, HEIGHT / 2))
    await page.mouse.wheel(0, -200)  # zoom in around the middle
    await page.wait_for_function(
        "scale => JSON.parse(document.getElementById('view').dataset.camera).scale > scale * 1.2",
        arg=fitted,
    )
    screen, scale = await to_screen(page)
    await page.click("[data-tool=lasso]")
    await page.mouse.move(*screen(*TRIANGLE[0]))
    await page.mouse.down()
    for corner in (*TRIANGLE[1:], TRIANGLE[0]):
        await page.mouse.move(*screen(*corner), steps=10)
    await page.mouse.up()
    await page.click("[data-tool=eraser]")
    await page.locator("#size").fill("24")
    await page.mouse.move(*screen(*ERASE[0]))
    await page.mouse.down()
    await page.mouse.move(*screen(*ERASE[1]), steps=10)
    await page.mouse.up()
    await page.click("#undo")
    await page.click("#redo")
    await page.click("#invert")
    async with page.expect_navigation():
        await page.click("#paint")
    answer = await page.inner_text("main")
    await context.close()
    return {"empty_hint": empty_hint, "zoom": scale / fitted, "answer": answer}


async def test_lasso_eraser_undo_redo_invert_and_zoom(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store, browser: BrowserThread
) -> None:
    await start_painter(start_bot)
    url = await paint_command(fake_discord)
    seen = await browser.run(use_the_tools(browser.browser, url))
    assert seen["empty_hint"] == "Paint the area to repaint first."
    assert "Job 1 is queued" in seen["answer"]
    mask = await stored_mask(store, await stored_job(store, 1))
    # Inverted: what was lassoed (and not erased) is kept, everything else is repainted.
    assert mask[140, 180] <= 40  # inside the triangle, below the eraser's stroke
    assert mask[50, 40] >= 200 and mask[240, 360] >= 200  # outside the triangle
    assert mask[int(FINGER[1]), int(FINGER[0])] >= 200  # the pinch's first finger painted nothing
    assert mask[90, 190] >= 200  # erased from the triangle (the redone eraser stroke)
    assert seen["zoom"] > 1.2  # all of it drawn zoomed in: the view's mapping held
