# One image for every genrectl service (CLI, migrate, cpu-worker, gpu-worker).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
# The locked set first, every file checked against its hash; then torch, torchvision and
# torchaudio at their exact pins (they and their CUDA libraries are not in the lock: see
# the Makefile); then genrectl itself, which must add nothing.
RUN pip install --require-hashes --no-deps -r requirements.lock \
 && pip install torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
COPY genrectl ./genrectl
COPY cli ./cli
COPY db ./db
COPY scheduler ./scheduler
COPY worker ./worker
RUN pip install --no-deps --no-build-isolation '.[monitor]' && pip check
RUN useradd --create-home genrectl \
 && mkdir -p /data /music && chown genrectl /data
# A named volume mounted at /data starts with this ownership, so the workers can write shards.
USER genrectl
VOLUME ["/data"]
ENTRYPOINT ["genrectl"]
CMD ["--help"]
