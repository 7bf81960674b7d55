# One image for every genrectl service (CLI, migrate, cpu-worker, gpu-worker).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY genrectl ./genrectl
COPY cli ./cli
COPY db ./db
COPY scheduler ./scheduler
COPY worker ./worker
RUN pip install .
RUN useradd --create-home genrectl \
 && mkdir -p /data /music && chown genrectl /data
# A named volume mounted at /data starts with this ownership, so the workers can write shards.
USER genrectl
VOLUME ["/data"]
ENTRYPOINT ["genrectl"]
CMD ["--help"]
