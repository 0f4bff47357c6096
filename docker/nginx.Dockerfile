# nginx from Debian bookworm's package (1.22) with docker/nginx.conf: the load balancer in front of
# the stra-face replicas (docker/compose.replicas.yml). From the repository root:
#   docker build -f docker/nginx.Dockerfile -t stra-face-nginx:1.22 docker
# Alternative without building: the upstream nginx image (e.g. nginx:1.27-alpine) with nginx.conf
# mounted at /etc/nginx/conf.d/default.conf.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx.conf /etc/nginx/conf.d/default.conf
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
