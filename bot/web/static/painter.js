// The mask painter: paint over the picture where it should change, then send the mask with the form.
// The mask lives in a canvas of the picture's own size; the view shows it tinted over the picture,
// zoomed and moved with pointer events (one finger or the mouse paints, two fingers or the wheel
// zoom and move). Sent as a PNG, white on black, exactly the picture's size.
"use strict";

(function () {
  const root = document.getElementById("painter");
  const width = Number(root.dataset.width);
  const height = Number(root.dataset.height);
  const view = document.getElementById("view");
  const stage = document.getElementById("stage");
  const viewCtx = view.getContext("2d");
  const form = document.getElementById("form");
  const hint = document.getElementById("hint");
  const sizeInput = document.getElementById("size");
  const opacityInput = document.getElementById("opacity");
  const TINT = "rgb(255, 40, 90)";

  const picture = new Image();
  picture.decoding = "async";
  const mask = document.createElement("canvas");
  mask.width = width;
  mask.height = height;
  const maskCtx = mask.getContext("2d", { willReadFrequently: true });

  // The view: a picture pixel (x, y) shows at (x * scale + left, y * scale + top) CSS pixels.
  const camera = { scale: 1, left: 0, top: 0 };
  let tool = "brush";
  let spaceHeld = false;
  let hover = null; // where the pointer is, for the brush outline
  let shape = null; // the rectangle or lasso being drawn, in picture pixels
  let stroke = null; // the brush or eraser stroke being drawn
  let drag = null; // moving the view with one pointer
  let click = null; // where the Select tool was pressed
  const pointers = new Map(); // pointerId -> last {x, y} in CSS pixels of the stage
  let pinch = null;

  // Undo: whole snapshots of the mask, as many as fit a memory budget (large pictures get fewer).
  const history = { undo: [], redo: [], limit: Math.max(1, Math.min(50, Math.floor(2e8 / (width * height * 4)))) };

  function snapshot() {
    history.undo.push(maskCtx.getImageData(0, 0, width, height));
    if (history.undo.length > history.limit) history.undo.shift();
    history.redo = [];
  }

  function restore(from, to) {
    if (!from.length) return;
    to.push(maskCtx.getImageData(0, 0, width, height));
    maskCtx.putImageData(from.pop(), 0, 0);
    render();
  }

  function toPicture(x, y) {
    return { x: (x - camera.left) / camera.scale, y: (y - camera.top) / camera.scale };
  }

  function local(event) {
    const box = view.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  }

  function fit() {
    const box = stage.getBoundingClientRect();
    const scale = Math.min(box.width / width, box.height / height) * 0.98;
    camera.scale = scale;
    camera.left = (box.width - width * scale) / 2;
    camera.top = (box.height - height * scale) / 2;
    render();
  }

  function zoomAt(x, y, factor) {
    const scale = Math.min(Math.max(camera.scale * factor, 0.02), 40);
    const point = toPicture(x, y);
    camera.scale = scale;
    camera.left = x - point.x * scale;
    camera.top = y - point.y * scale;
    render();
  }

  const narrow = window.matchMedia("(max-width: 760px)");

  function resize() {
    if (narrow.matches) {
      // On a phone the picture takes the width; the stage is as tall as it needs, within reason.
      const across = stage.getBoundingClientRect().width;
      stage.style.height = Math.round(Math.min(window.innerHeight * 0.7, (across * height) / width + 16)) + "px";
    } else {
      stage.style.height = "";
    }
    const box = stage.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    view.width = Math.round(box.width * ratio);
    view.height = Math.round(box.height * ratio);
    view.style.width = box.width + "px";
    view.style.height = box.height + "px";
  }

  let pending = false;
  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    pending = false;
    const ratio = window.devicePixelRatio || 1;
    viewCtx.setTransform(1, 0, 0, 1, 0, 0);
    viewCtx.clearRect(0, 0, view.width, view.height);
    viewCtx.setTransform(
      ratio * camera.scale, 0, 0, ratio * camera.scale, ratio * camera.left, ratio * camera.top
    );
    viewCtx.imageSmoothingEnabled = camera.scale < 4; // zoomed far in: the pixels themselves
    if (picture.complete && picture.naturalWidth) viewCtx.drawImage(picture, 0, 0, width, height);
    viewCtx.globalAlpha = Number(opacityInput.value) / 100;
    viewCtx.drawImage(mask, 0, 0);
    viewCtx.globalAlpha = 1;
    viewCtx.lineWidth = 2 / camera.scale;
    viewCtx.strokeStyle = "#fff";
    viewCtx.setLineDash([6 / camera.scale, 4 / camera.scale]);
    if (shape) {
      viewCtx.beginPath();
      tracePath(viewCtx, shape);
      viewCtx.stroke();
    }
    viewCtx.setLineDash([]);
    if (hover && (tool === "brush" || tool === "eraser") && !pinch) {
      viewCtx.beginPath();
      viewCtx.arc(hover.x, hover.y, brushWidth() / 2, 0, Math.PI * 2);
      viewCtx.stroke();
    }
    view.dataset.camera = JSON.stringify(camera); // read by the tests and by nobody else
  }

  function brushWidth() {
    return Number(sizeInput.value) / camera.scale; // the slider is in screen pixels
  }

  function tracePath(ctx, s) {
    if (s.kind === "rect") {
      ctx.rect(
        Math.min(s.from.x, s.to.x), Math.min(s.from.y, s.to.y),
        Math.abs(s.to.x - s.from.x), Math.abs(s.to.y - s.from.y)
      );
    } else {
      s.points.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
      ctx.closePath();
    }
  }

  function paintSegment(from, to) {
    maskCtx.globalCompositeOperation = tool === "eraser" ? "destination-out" : "source-over";
    maskCtx.strokeStyle = TINT;
    maskCtx.fillStyle = TINT;
    maskCtx.lineWidth = stroke.width;
    maskCtx.lineCap = "round";
    maskCtx.lineJoin = "round";
    maskCtx.beginPath();
    if (from.x === to.x && from.y === to.y) {
      // A tap: browsers draw nothing for a line of no length, whatever its caps.
      maskCtx.arc(from.x, from.y, stroke.width / 2, 0, Math.PI * 2);
      maskCtx.fill();
    } else {
      maskCtx.moveTo(from.x, from.y);
      maskCtx.lineTo(to.x, to.y);
      maskCtx.stroke();
    }
    maskCtx.globalCompositeOperation = "source-over";
  }

  function fillShape(s) {
    maskCtx.globalCompositeOperation = "source-over";
    maskCtx.fillStyle = TINT;
    maskCtx.beginPath();
    tracePath(maskCtx, s);
    maskCtx.fill();
  }

  // The Select tool: the bot outlines the thing clicked (SAM 2); it is added to the mask, or taken out.
  let selecting = false;
  async function select(point, add) {
    if (selecting || point.x < 0 || point.y < 0 || point.x >= width || point.y >= height) return;
    selecting = true;
    say("Looking for the thing you clicked…");
    try {
      const answer = await fetch(root.dataset.link + "/select", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ x: point.x, y: point.y }),
      });
      if (!answer.ok) {
        say(await answer.text(), true);
        return;
      }
      const found = await createImageBitmap(await answer.blob());
      const layer = document.createElement("canvas");
      layer.width = width;
      layer.height = height;
      const ctx = layer.getContext("2d");
      ctx.drawImage(found, 0, 0, width, height);
      const pixels = ctx.getImageData(0, 0, width, height);
      const tint = [255, 40, 90];
      for (let i = 0; i < pixels.data.length; i += 4) {
        pixels.data[i + 3] = pixels.data[i]; // white (inside) becomes opaque tint
        pixels.data.set(tint, i);
      }
      ctx.putImageData(pixels, 0, 0);
      snapshot();
      maskCtx.globalCompositeOperation = add ? "source-over" : "destination-out";
      maskCtx.drawImage(layer, 0, 0);
      maskCtx.globalCompositeOperation = "source-over";
      say(add ? "Selected. Click more things, or paint." : "Taken out.");
      render();
    } catch (error) {
      say("The bot could not be reached; try again.", true);
    } finally {
      selecting = false;
    }
  }

  function say(text, warning) {
    hint.textContent = text;
    hint.classList.toggle("warning", Boolean(warning));
  }

  function panning(event) {
    return tool === "pan" || spaceHeld || event.button === 1 || event.button === 2;
  }

  function startPinch() {
    const [a, b] = [...pointers.values()];
    pinch = { distance: Math.hypot(a.x - b.x, a.y - b.y), middle: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
    if (stroke) {
      // The first finger's stroke was the start of a pinch, not paint: take it back.
      maskCtx.putImageData(history.undo.pop(), 0, 0);
      stroke = null;
    }
    shape = null;
    drag = null;
  }

  view.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    try {
      view.setPointerCapture(event.pointerId); // moves outside the canvas still count
    } catch (error) {
      // a pointer the browser no longer tracks: its events still come to the canvas
    }
    const at = local(event);
    pointers.set(event.pointerId, at);
    if (pointers.size === 2) {
      startPinch();
      return;
    }
    if (pointers.size > 2 || pinch) return;
    if (panning(event)) {
      drag = { x: at.x, y: at.y };
      return;
    }
    if (event.button !== 0) return;
    const point = toPicture(at.x, at.y);
    if (tool === "brush" || tool === "eraser") {
      snapshot();
      stroke = { last: point, width: brushWidth() };
      paintSegment(point, point);
    } else if (tool === "rect") {
      shape = { kind: "rect", from: point, to: point };
    } else if (tool === "lasso") {
      shape = { kind: "lasso", points: [point] };
    } else if (tool === "select" || tool === "unselect") {
      click = { at, point };
    }
    render();
  });

  view.addEventListener("pointermove", (event) => {
    const at = local(event);
    hover = toPicture(at.x, at.y);
    if (!pointers.has(event.pointerId)) {
      render();
      return;
    }
    pointers.set(event.pointerId, at);
    if (pinch && pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const distance = Math.hypot(a.x - b.x, a.y - b.y);
      const middle = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      camera.left += middle.x - pinch.middle.x;
      camera.top += middle.y - pinch.middle.y;
      zoomAt(middle.x, middle.y, distance / pinch.distance);
      pinch = { distance, middle };
      return;
    }
    if (drag) {
      camera.left += at.x - drag.x;
      camera.top += at.y - drag.y;
      drag = { x: at.x, y: at.y };
    } else if (stroke) {
      paintSegment(stroke.last, hover);
      stroke.last = hover;
    } else if (shape && shape.kind === "rect") {
      shape.to = hover;
    } else if (shape) {
      shape.points.push(hover);
    }
    render();
  });

  function release(event) {
    if (!pointers.delete(event.pointerId)) return;
    if (pinch) {
      if (pointers.size === 0) pinch = null;
      click = null;
      return;
    }
    if (click) {
      const at = local(event);
      if (Math.hypot(at.x - click.at.x, at.y - click.at.y) < 8) select(click.point, tool === "select");
      click = null;
    }
    if (shape) {
      const area = shape.kind === "rect"
        ? Math.abs(shape.to.x - shape.from.x) * Math.abs(shape.to.y - shape.from.y)
        : shape.points.length;
      if (area > 2) {
        snapshot();
        fillShape(shape);
      }
      shape = null;
    }
    stroke = null;
    drag = null;
    render();
  }
  view.addEventListener("pointerup", release);
  view.addEventListener("pointercancel", release);
  view.addEventListener("pointerleave", () => {
    hover = null;
    render();
  });
  view.addEventListener("contextmenu", (event) => event.preventDefault());
  view.addEventListener("wheel", (event) => {
    event.preventDefault();
    const at = local(event);
    zoomAt(at.x, at.y, Math.exp(-event.deltaY * 0.0015));
  }, { passive: false });

  function choose(name) {
    tool = name;
    document.querySelectorAll("[data-tool]").forEach((button) => {
      button.classList.toggle("active", button.dataset.tool === name);
      button.setAttribute("aria-checked", String(button.dataset.tool === name));
    });
    view.dataset.tool = name;
  }
  document.querySelectorAll("[data-tool]").forEach((button) => {
    button.addEventListener("click", () => choose(button.dataset.tool));
  });

  document.getElementById("undo").addEventListener("click", () => restore(history.undo, history.redo));
  document.getElementById("redo").addEventListener("click", () => restore(history.redo, history.undo));
  document.getElementById("clear").addEventListener("click", () => {
    snapshot();
    maskCtx.clearRect(0, 0, width, height);
    render();
  });
  document.getElementById("invert").addEventListener("click", () => {
    snapshot();
    const copy = document.createElement("canvas");
    copy.width = width;
    copy.height = height;
    copy.getContext("2d").drawImage(mask, 0, 0);
    maskCtx.globalCompositeOperation = "source-over";
    maskCtx.fillStyle = TINT;
    maskCtx.clearRect(0, 0, width, height);
    maskCtx.fillRect(0, 0, width, height);
    maskCtx.globalCompositeOperation = "destination-out";
    maskCtx.drawImage(copy, 0, 0);
    maskCtx.globalCompositeOperation = "source-over";
    render();
  });
  document.getElementById("fit").addEventListener("click", fit);
  opacityInput.addEventListener("input", render);
  sizeInput.addEventListener("input", render);

  const strength = document.getElementById("strength");
  const strengthValue = document.getElementById("strength-value");
  strength.addEventListener("input", () => (strengthValue.value = strength.value));

  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLTextAreaElement || event.target instanceof HTMLSelectElement) return;
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && key === "z") {
      event.preventDefault();
      if (event.shiftKey) restore(history.redo, history.undo);
      else restore(history.undo, history.redo);
    } else if ((event.ctrlKey || event.metaKey) && key === "y") {
      event.preventDefault();
      restore(history.redo, history.undo);
    } else if (key === " ") {
      spaceHeld = true;
      event.preventDefault();
    } else if (!event.ctrlKey && !event.metaKey) {
      const tools = { b: "brush", e: "eraser", r: "rect", l: "lasso", s: "select", u: "unselect" };
      if (tools[key] && document.querySelector(`[data-tool="${tools[key]}"]`)) choose(tools[key]);
      if (key === "0") fit();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " ") spaceHeld = false;
  });

  // The mask as sent: white where painted (soft edges kept), black elsewhere.
  function exportMask() {
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const ctx = out.getContext("2d");
    ctx.drawImage(mask, 0, 0);
    ctx.globalCompositeOperation = "source-in";
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    ctx.globalCompositeOperation = "destination-over";
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    return out;
  }

  function painted() {
    const data = maskCtx.getImageData(0, 0, width, height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i]) return true;
    return false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!painted()) {
      say("Paint the area to repaint first.", true);
      return;
    }
    const button = document.getElementById("paint");
    button.disabled = true;
    button.textContent = "Sending…";
    exportMask().toBlob((blob) => {
      const files = new DataTransfer();
      files.items.add(new File([blob], "mask.png", { type: "image/png" }));
      document.getElementById("mask").files = files.files;
      form.submit(); // a plain form post: the answer is a page of its own
    }, "image/png");
  });

  window.addEventListener("resize", () => {
    resize();
    fit();
  });
  picture.addEventListener("load", () => {
    root.dataset.ready = "true";
    render();
  });
  picture.addEventListener("error", () => {
    say("The picture could not be loaded; open the painter again from Discord.", true);
  });
  resize();
  fit();
  choose("brush");
  picture.src = root.dataset.link + "/picture";
})();
