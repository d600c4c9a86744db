# One image for web, migrations and workers. EXTRAS=training adds torch/transformers for GPU workers
# (on a CUDA host, install the CUDA build of torch matching the driver before the extras).
FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data
WORKDIR /srv/rlhf
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY training ./training
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
RUN useradd --create-home rlhf && mkdir -p /data && chown rlhf /data
USER rlhf
EXPOSE 8000
CMD ["rlhf", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
