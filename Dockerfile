# One image for the api, the workers and the Ray nodes (docker-compose.yml). CPU torch first, as on the dev machines.
FROM python:3.11-slim
WORKDIR /app
# procps: the compose health checks look for the worker and raylet processes with pgrep
RUN apt-get update && apt-get install -y --no-install-recommends procps && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY audit ./audit
COPY models ./models
COPY service ./service
RUN pip install --no-cache-dir '.[ray]'
ENV IMITAUDIT_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["imitaudit", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
