# syntax=docker/dockerfile:1
# NeuroCare-BIDS BIDS-App image:  docker run --rm -v /data/bids:/bids:ro -v /data/out:/out \
#                                     neurocare-bids:0.1.0 /bids /out participant
#
# Build (CPU, tensorflow-cpu):          docker build -t neurocare-bids:0.1.0 .
# Build (GPU, TensorFlow + CUDA wheels): docker build --build-arg VARIANT=gpu -t neurocare-bids:0.1.0-gpu .
# Offline build: wheels placed in build/wheelhouse/ (scripts/container_test.sh makes one) are installed with
# `pip --no-index`; without that folder pip downloads from PyPI. podman/buildah build it the same way.
#
# Stages: `requirements` (the dependency list), `wheels` (every wheel the image needs), `runtime` (a fresh base,
# the wheels installed into /opt/neurocare from a bind mount: no compiler, pip cache, wheel, header or source
# file in the image that runs).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- requirements: pyproject.toml's dependencies, TensorFlow chosen by VARIANT. A stage of its own so that
# editing pyproject.toml without changing the dependencies keeps the dependency layers cached.
FROM ${PYTHON_IMAGE} AS requirements
ARG VARIANT=cpu
WORKDIR /src
COPY pyproject.toml scripts/container_requirements.py ./
RUN python container_requirements.py "${VARIANT}" pyproject.toml > /requirements.txt

# --- wheels: the dependencies' wheels, then the app's. All dependencies ship binary wheels for Linux x86-64
# and CPython 3.11, so no compiler is needed; should one ever need compiling, install it here, never below.
FROM ${PYTHON_IMAGE} AS wheels
LABEL io.github.neurocare-bids.stage="wheels"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# The wheelhouse is optional: the bracket makes the pattern match nothing when it is absent.
COPY scripts/container_requirements.py build/wheelhous[e] /wheelhouse/
COPY --from=requirements /requirements.txt /wheels/requirements.txt
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
 && python -m venv /opt/pip \
 && /opt/pip/bin/python -m pip wheel --no-cache-dir --wheel-dir /wheels/deps -r /wheels/requirements.txt \
 && sha256sum /wheels/deps/*.whl > /wheels/deps.sha256
WORKDIR /src
COPY pyproject.toml README.md run.py setup.py MANIFEST.in ./
COPY neurocare_bids/ neurocare_bids/
COPY boilerplate/ boilerplate/
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
 && /opt/pip/bin/python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app . \
 && sha256sum /wheels/app/*.whl > /wheels/app.sha256

# --- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
ARG VERSION=0.1.0
ARG PYTHON_IMAGE
LABEL org.opencontainers.image.title="NeuroCare-BIDS" \
      org.opencontainers.image.description="BIDS-App for epileptic seizure detection in scalp EEG (${VARIANT} variant)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/neurocare-bids/neurocare-bids" \
      org.opencontainers.image.url="https://github.com/neurocare-bids/neurocare-bids" \
      org.opencontainers.image.documentation="https://github.com/neurocare-bids/neurocare-bids#containers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="NeuroCare-BIDS developers" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      io.github.neurocare-bids.variant="${VARIANT}"

# A fixed non-root user for plain `docker run`; any other `--user UID:GID` works too (see the entry point).
RUN groupadd --system --gid 1000 neurocare \
 && useradd --system --uid 1000 --gid neurocare --create-home --home-dir /home/neurocare \
            --shell /usr/sbin/nologin neurocare

# The exact wheels installed (name, version, SHA-256) stay in the image as a record; copying the list first
# also makes the layer cache follow the wheels, which the bind mount alone would not. Then drop what is never
# used at run time: TensorFlow's C++ headers (430 MB) and the validator's source map.
COPY --from=wheels /wheels/requirements.txt /wheels/deps.sha256 /opt/neurocare/share/neurocare-image/
RUN --mount=type=bind,from=wheels,source=/wheels/deps,target=/wheels/deps \
    python -m venv /opt/neurocare \
 && /opt/neurocare/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links /wheels/deps -r /opt/neurocare/share/neurocare-image/requirements.txt \
 && rm -rf /opt/neurocare/lib/python3*/site-packages/tensorflow/include \
           /opt/neurocare/lib/python3*/site-packages/bids_validator_deno/bids-validator.js.map

COPY --from=wheels /wheels/app.sha256 /opt/neurocare/share/neurocare-image/
COPY scripts/container_entrypoint.sh /opt/neurocare/bin/neurocare-entrypoint
RUN --mount=type=bind,from=wheels,source=/wheels/app,target=/wheels/app \
    /opt/neurocare/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
        /wheels/app/*.whl \
 && chmod 0755 /opt/neurocare/bin/neurocare-entrypoint \
 && /opt/neurocare/bin/neurocare-bids --version \
 && TF_CPP_MIN_LOG_LEVEL=2 /opt/neurocare/bin/python -c "import keras, mne, mne_bids, bids, tensorflow, neurocare_bids.evaluation.group" \
 && DENO_DIR=/tmp/deno /opt/neurocare/bin/bids-validator-deno --version \
 && rm -rf /tmp/deno

# PYTHONNOUSERSITE: a user's ~/.local packages (Apptainer binds the real home) must not shadow the image's.
# No .pyc writes (the root file system may be read-only; pip precompiled the image's modules). Unbuffered
# output keeps Slurm logs in order. TensorFlow uses the CPUs the container may use (its affinity mask); the
# entry point sizes the OpenBLAS/OpenMP pools to a Slurm allocation (participant workers use one thread each).
ENV PATH=/opt/neurocare/bin:${PATH} \
    HOME=/home/neurocare \
    LANG=C.UTF-8 \
    PYTHONNOUSERSITE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    NEUROCARE_CONTAINER_VARIANT=${VARIANT}

USER 1000:1000
WORKDIR /home/neurocare
ENTRYPOINT ["/opt/neurocare/bin/neurocare-entrypoint"]
CMD ["--help"]
