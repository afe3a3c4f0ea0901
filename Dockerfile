# memvid-mcp: the MCP server over streamable HTTP, built from this source tree.
#
#   docker build -t memvid-mcp .
#   docker run -d -p 127.0.0.1:8765:8765 -v memvid-data:/data \
#     -e MEMVID_HTTP_TOKEN="$(openssl rand -hex 32)" memvid-mcp
#
# The server listens on all interfaces inside the container, so it refuses to start without
# MEMVID_HTTP_TOKEN. Clients connect to http://127.0.0.1:8765/mcp with
# "Authorization: Bearer <token>".

ARG PYTHON_VERSION=3.11
# optional extras to install, e.g. "team" (PostgreSQL + S3 engine; docker-compose.yml)
ARG MEMVID_EXTRAS=""

# ---- build: a wheel of memvid-mcp and wheels of every dependency
FROM python:${PYTHON_VERSION}-slim AS build
ARG MEMVID_EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels ".${MEMVID_EXTRAS:+[$MEMVID_EXTRAS]}"

# ---- runtime: wheels only, no compilers, no sources
FROM python:${PYTHON_VERSION}-slim
ARG MEMVID_EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/memvid \
    HF_HOME=/data/huggingface \
    MEMVID_DATA_DIR=/data
RUN groupadd --system --gid 10001 memvid \
    && useradd --system --uid 10001 --gid memvid --home-dir /home/memvid --create-home \
       --shell /usr/sbin/nologin memvid \
    && mkdir -p /data \
    && chown memvid:memvid /data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels \
        "memvid-mcp${MEMVID_EXTRAS:+[$MEMVID_EXTRAS]}"
USER memvid:memvid
WORKDIR /home/memvid
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8765), 3).close()"]
ENTRYPOINT ["memvid-mcp"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8765"]
