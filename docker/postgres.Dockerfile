# PostgreSQL 15 with pgvector, from Debian's packages (the gallery needs pgvector >= 0.5 for HNSW;
# Debian bookworm has no pgvector package that new, so it is compiled here from its source release).
# The source tarball must be in docker/vendor/ first (git-ignored), then, from the repository root:
#   cp ../shared/vendor/pgvector-0.8.6.tar.gz docker/vendor/    # or download pgvector's v0.8.6 release
#   docker build -f docker/postgres.Dockerfile -t stra-face-postgres:15-pgvector0.8.6 docker
# Its sha256 is checked against PGVECTOR_SHA256 (the vendored `git archive` of tag v0.8.6; a tarball
# made another way has other bytes: check it yourself, then pass --build-arg PGVECTOR_SHA256=...).
# Alternative without building: the upstream image pgvector/pgvector:0.8.0-pg17 (same variables).
# Runs like the upstream postgres image: POSTGRES_PASSWORD (required), POSTGRES_USER (postgres),
# POSTGRES_DB (= POSTGRES_USER) make the cluster on first start in PGDATA, a volume.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG PGVECTOR_VERSION=0.8.6
ARG PGVECTOR_SHA256=5743dac39fdfa740533cf95e71b033bd5513b71dda194b3cf19464ccbf76f3fb
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev make postgresql-server-dev-15 \
    && rm -rf /var/lib/apt/lists/*
COPY vendor/pgvector-${PGVECTOR_VERSION}.tar.gz /tmp/pgvector.tar.gz
WORKDIR /tmp/pgvector
# with_llvm=no: no JIT bitcode (it would need clang at build time and is optional at run time)
RUN echo "${PGVECTOR_SHA256}  /tmp/pgvector.tar.gz" | sha256sum -c - \
    && tar xzf /tmp/pgvector.tar.gz --strip-components=1 \
    && make -j"$(nproc)" with_llvm=no OPTFLAGS="" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config \
    && make with_llvm=no PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config install DESTDIR=/out

FROM ${BASE_IMAGE}
# no default cluster from the package: the entrypoint makes one in PGDATA on first start
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/docker.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql \
    && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
COPY --from=build /out/usr/ /usr/
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=5 \
    CMD ["sh", "-c", "pg_isready -q -h /var/run/postgresql -U \"${POSTGRES_USER:-postgres}\" -d \"${POSTGRES_DB:-${POSTGRES_USER:-postgres}}\""]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
