# inpaintbot on an NVIDIA GPU. Build and run with `docker compose up -d --build` (see README, Docker).
#
# Base: python:3.11-slim rather than an nvidia/cuda image. PyTorch's Linux wheels bundle the CUDA runtime
# and cuDNN (the nvidia-* pip packages), so the image needs only the host's NVIDIA driver, which the
# NVIDIA Container Toolkit mounts when the container gets a GPU. A CUDA base image would add a second
# copy of those libraries and a Python of its own.
FROM python:3.11-slim

# PyPI's Linux torch wheel is a CUDA build. If the host's driver is too old for its CUDA version, pick a
# matching wheel index, e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_INDEX_URL=""
# More Python packages, e.g. --build-arg EXTRA_PACKAGES=asyncpg for a PostgreSQL database.
ARG EXTRA_PACKAGES=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/inpaintbot/bin:$PATH

# torch first, in a layer of its own: it is most of the image and changes least often.
RUN python -m venv /opt/inpaintbot \
    && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch>=2.1"

# The wheel carries the database migrations (pyproject's data-files), so the bot migrates by itself.
COPY pyproject.toml README.md /src/
COPY bot /src/bot
COPY engine /src/engine
COPY migrations /src/migrations
RUN pip install /src $EXTRA_PACKAGES && rm -rf /src

# Never root: a numeric id, so runtimes can verify it. Named volumes start out owned by it.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin inpaintbot \
    && mkdir -p /data /cache/huggingface \
    && chown inpaintbot:inpaintbot /data /cache/huggingface
USER 1000:1000
WORKDIR /home/inpaintbot

# The database and pictures (back this up), and the model downloads (large; re-downloadable).
ENV INPAINTBOT_DATA_DIR=/data \
    HF_HOME=/cache/huggingface \
    INPAINTBOT_WEB_HOST=0.0.0.0
VOLUME ["/data", "/cache/huggingface"]

# The mask painter's web server (on when INPAINTBOT_PUBLIC_URL is set), for a reverse proxy in front.
EXPOSE 8080

# Healthy while the bot is connected to Discord with its model loaded (it refreshes a heartbeat file in
# /data). The first start downloads the model, hence the long start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 CMD ["inpaintbot", "health"]

# `docker stop` sends what Ctrl-C sends, which the bot handles: the running job gets
# INPAINTBOT_SHUTDOWN_TIMEOUT seconds to finish, then goes back in the queue. Python leaves SIGTERM
# unhandled, so Docker's default signal would end in a kill with no clean shutdown.
STOPSIGNAL SIGINT

# `docker compose run --rm inpaintbot check` (or `db upgrade`, `inpaint ...`) runs the other commands.
ENTRYPOINT ["inpaintbot"]
CMD ["run"]
