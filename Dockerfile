# The project's image: the bridge (`cdc run`), the shop load (`python -m cdc.demo.load`) and the
# Dagster webserver and daemon of docker-compose.yml all run from it.
#
# In compose the bridge hands capture to Kafka Connect (CDC_KAFKA_CONNECT_URL), so no JVM is needed.
# For the embedded Debezium engine (`cdc demo`, or `cdc run` without CDC_KAFKA_CONNECT_URL) build
# with a JRE:  docker build --build-arg INSTALL_JRE=true -t pg-clickhouse-cdc:0.1.0-jre .
FROM python:3.11.13-slim-bookworm

ARG INSTALL_JRE=false
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN if [ "$INSTALL_JRE" = "true" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /opt/cdc
COPY pyproject.toml README.md ./
COPY cdc ./cdc
COPY pipelines ./pipelines
COPY dagster_project ./dagster_project
RUN pip install . && rm -rf build *.egg-info
COPY docker/dagster.yaml /opt/cdc/dagster.yaml

# Non-root; the state dir and the Dagster home are volumes in compose (they inherit this ownership).
RUN useradd --create-home --uid 10001 cdc \
    && mkdir -p /var/lib/cdc /opt/dagster/home \
    && chown cdc:cdc /var/lib/cdc /opt/dagster/home
USER cdc
ENV CDC_STATE_DIR=/var/lib/cdc \
    DAGSTER_HOME=/opt/dagster/home

ENTRYPOINT ["cdc"]
CMD ["run"]
