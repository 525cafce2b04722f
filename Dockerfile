# The bridge as a container: `docker build -t chatbridge .`, then see compose.yaml.
# Only the server extra is installed (no test tools), at the versions of constraints.txt.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY chatbridge ./chatbridge
RUN python -m venv /opt/chatbridge \
    && /opt/chatbridge/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/chatbridge/bin/pip install --no-cache-dir -c constraints.txt '.[server]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/chatbridge chatbridge
COPY --from=build /opt/chatbridge /opt/chatbridge
# Listens on every interface of the container: serve then refuses to start while a channel's
# webhooks are unauthenticated (set CHATWOOT_WEBHOOK_SECRET), unless told otherwise.
ENV PATH=/opt/chatbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CHATBRIDGE_HOST=0.0.0.0 \
    CHATBRIDGE_PORT=8000 \
    CHATBRIDGE_LOG_FORMAT=json \
    CHATBRIDGE_DATABASE_URL=sqlite+aiosqlite:////var/lib/chatbridge/chatbridge.db
WORKDIR /var/lib/chatbridge
USER chatbridge
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CHATBRIDGE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["chatbridge"]
CMD ["serve"]
