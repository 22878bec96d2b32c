# The code-location image: serves feature_assets.definitions over gRPC on port 3030, as the
# official Dagster Helm chart's user deployments expect (dagsterApiGrpcArgs in
# deploy/helm/values.yaml); the K8sRunLauncher starts each run's pod from the same image.
# No data inside: runs read and write Parquet on GCS day by day.
# Pinned by tag and digest: a re-pushed tag cannot change what is built (docs/gke.md: renew both).
FROM python:3.11.15-slim-bookworm@sha256:b18992999dbe963a45a8a4da40ac2b1975be1a776d939d098c647482bcad5cba

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM's wheel links the system's OpenMP runtime (libgomp), which slim images lack
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY deploy/requirements.lock /app/deploy/requirements.lock
# every file checked against the lock's SHA-256 (the hashes are those of the x86_64 wheels)
RUN pip install --no-deps --require-hashes -r deploy/requirements.lock
COPY pyproject.toml README.md /app/
COPY feature_assets /app/feature_assets
# built with the locked setuptools: nothing unpinned is fetched
RUN pip install --no-deps --no-build-isolation . \
    && useradd --create-home --uid 10001 dagster

USER 10001
EXPOSE 3030
# The chart passes its own arguments (dagster api grpc ...); this is the same for `docker run`.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "feature_assets.definitions"]
