# A container image of the node (docs/deploy.md): the runtime set from requirements.lock, every
# wheel checked against its hash, then the package itself without dependencies; it runs as an
# unprivileged user with its home on a volume.
#
#   docker build -t creditnode .
#   docker run -v creditnode-home:/home/creditnode/node -p 7443:7443 creditnode
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/creditnode
WORKDIR /src
COPY requirements.lock ./
RUN /opt/creditnode/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY node ./node
COPY adapters ./adapters
RUN /opt/creditnode/bin/pip install --no-deps . \
    && /opt/creditnode/bin/pip check

FROM python:3.11-slim-bookworm
COPY --from=build /opt/creditnode /opt/creditnode
RUN groupadd --system --gid 10001 creditnode \
    && useradd --system --uid 10001 --gid creditnode --home-dir /home/creditnode \
       --create-home --shell /usr/sbin/nologin creditnode \
    && install -d -o creditnode -g creditnode -m 0700 /home/creditnode/node
USER 10001:10001
ENV PATH=/opt/creditnode/bin:$PATH CREDITNODE_HOME=/home/creditnode/node PYTHONUNBUFFERED=1
VOLUME ["/home/creditnode/node"]
# gRPC with mutual TLS; the admin port (/metrics, /healthz, /readyz) is for the local network.
EXPOSE 7443 9464
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"
ENTRYPOINT ["creditnode"]
CMD ["serve", "--listen", "0.0.0.0:7443", "--metrics-listen", "0.0.0.0:9464", "--log-format", "json"]
