# One image for every role of an mdstudio deployment: the API (`mdstudio serve`, the default),
# migrations (`mdstudio db upgrade`), the Dagster code server (`dagster code-server start -m
# mdstudio_pipelines.definitions -a defs`), `dagster-webserver`, `dagster-daemon run`, and the
# run workers Dagster's Docker and Kubernetes launchers start from it.
#
# Built by `make image` (tools/image.sh) from a context holding requirements.lock and a
# wheelhouse made on the host from it: the build needs no network, and installs exactly the
# locked set, every file checked against its hash. BASE is any Debian bookworm image with
# Python 3.11 and venv: the official slim image where a registry is reachable, else one built
# from Debian's packages (debootstrap).
ARG BASE=python:3.11-slim-bookworm

# The locked dependencies, in a stage of their own: rebuilt only when the lock changes, and the
# wheelhouse stays out of the final image.
FROM ${BASE} AS build
COPY requirements.lock /build/requirements.lock
COPY wheelhouse/ /build/wheelhouse/
RUN python3 -m venv /opt/mdstudio \
 && /opt/mdstudio/bin/python -m pip install --no-cache-dir --no-index --disable-pip-version-check \
      --find-links /build/wheelhouse --require-hashes -r /build/requirements.lock

FROM ${BASE}
# A fixed, numeric, unprivileged user (Kubernetes' runAsNonRoot can check it); its home holds
# the embedded defaults and $DAGSTER_HOME when no volume is mounted there.
RUN groupadd --system --gid 10001 mdstudio \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mdstudio --create-home \
      --shell /usr/sbin/nologin mdstudio
COPY --from=build /opt/mdstudio /opt/mdstudio
# Then the project's own wheel, without dependencies of its own choosing; the venv's installers
# (pip, setuptools) go after it: the image holds the locked set and the project, nothing else.
COPY project/ /tmp/project/
RUN /opt/mdstudio/bin/python -m pip install --no-cache-dir --no-index --disable-pip-version-check \
      --no-deps /tmp/project/mdstudio-*.whl \
 && /opt/mdstudio/bin/python -m pip uninstall --yes --quiet setuptools pip \
 && rm -rf /tmp/project
ENV PATH=/opt/mdstudio/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    MDSTUDIO_HOME=/var/lib/mdstudio \
    DAGSTER_HOME=/var/lib/mdstudio/dagster
USER 10001:10001
WORKDIR /var/lib/mdstudio
EXPOSE 8787 3000 4000
# The API's own check (the store reachable and migrated); the other roles' services replace it
# with theirs (deploy/compose/compose.yaml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=4)"]
CMD ["mdstudio", "serve", "--host", "0.0.0.0", "--port", "8787"]
