#!/usr/bin/env bash
# Container smoke test (`make container-test`): builds the CPU image from the Dockerfile and runs it the way
# fMRIPrep's CI runs its image: read-only root file system, no network, an arbitrary user (1234:1234), the
# input mounted read-only and only the output folder writable. It checks `--version`, writes a tiny demo
# dataset, runs the participant level (with the BIDS validator, offline) and the group level, and compares the
# list of output files with tests/container/expected_outputs.txt.
#
# Needs podman, buildah and runc (installed from Debian with apt-get when missing and run as root).
# The base image named in the Dockerfile (ARG PYTHON_IMAGE) is pulled when a registry is reachable; when it
# cannot be, a STAND-IN base is built locally (Debian bookworm by debootstrap + podman import, with Debian's
# Python 3.11 at the paths the official image uses) and the test says so. Python packages come from a
# wheelhouse made on the host (build/wheelhouse, pinned to the versions in the project's virtual environment)
# and the image is built without network access.
#
# Environment: PYTHON (host Python with pip; default .venv/bin/python), IMAGE (tag to build; default
# localhost/neurocare-bids:test), KEEP=1 (keep the temporary folder), UPDATE_EXPECTED=1 (rewrite the expected
# file list from this run), DEBIAN_MIRROR (for debootstrap; default: the host's apt mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
START=$SECONDS

PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${IMAGE:-localhost/neurocare-bids:test}
EXPECTED=tests/container/expected_outputs.txt
STANDIN_LABEL=io.github.neurocare-bids.stand-in
PODMAN=(podman --runtime runc)                                        # crun fails on hybrid cgroups
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

step() { printf '\n== [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf '\ncontainer-test: FAILED: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/neurocare-container-test.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- 1. tools ----------------------------------------------------------------------------------------------
step "container tools"
missing=()
for tool in podman buildah runc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        fail "missing ${missing[*]}: install podman, buildah and runc (Debian: apt-get install podman buildah runc)"
    fi
    echo "installing podman buildah runc from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc >/dev/null \
        || fail "apt-get install podman buildah runc failed"
fi
podman --version
if ! probe=$("${PODMAN[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' 2>&1); then
    fail "podman cannot run here: $probe"
fi
echo "runtime and storage: $probe"

# --- 2. base image -----------------------------------------------------------------------------------------
step "base image"
PYTHON_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
[ -n "$PYTHON_IMAGE" ] || fail "no 'ARG PYTHON_IMAGE=' default in the Dockerfile"
case "$PYTHON_IMAGE" in
    */*) REAL_BASE=$PYTHON_IMAGE ;;
    *) REAL_BASE=docker.io/library/$PYTHON_IMAGE ;;
esac
STANDIN=localhost/neurocare-stand-in-python:${PYTHON_IMAGE##*:}
STANDIN_USED=0
if podman image exists "$REAL_BASE"; then
    BASE=$REAL_BASE
elif timeout 120 podman pull -q "$REAL_BASE" >/dev/null 2>"$WORK/pull.log"; then
    BASE=$REAL_BASE
else
    STANDIN_USED=1
    BASE=$STANDIN
    echo "cannot pull $REAL_BASE: $(tail -n 1 "$WORK/pull.log")"
    if podman image exists "$STANDIN"; then
        echo "reusing the stand-in base $STANDIN built earlier"
    else
        command -v debootstrap >/dev/null || {
            [ "$(id -u)" = 0 ] || fail "debootstrap is missing (needed for the stand-in base image)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || fail "cannot install debootstrap"
        }
        [ "$(id -u)" = 0 ] || fail "building the stand-in base with debootstrap needs root"
        mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
        mirror=${mirror:-http://deb.debian.org/debian}
        echo "building the stand-in base $STANDIN: debootstrap --variant=minbase bookworm from $mirror"
        rootfs=$WORK/rootfs
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
        # The official python image has its interpreter in /usr/local/bin; Debian's is /usr/bin/python3.11.
        for name in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/$name"; done
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
               "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        tar -C "$rootfs" -c . | podman import \
            --change "LABEL $STANDIN_LABEL=\"debootstrap bookworm + Debian python3.11, standing in for $REAL_BASE\"" \
            --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$STANDIN" >/dev/null \
            || fail "podman import of the stand-in base failed"
        rm -rf "$rootfs"
    fi
    cat <<EOF

  ******************************************************************************************************
  ** STAND-IN BASE IMAGE: $REAL_BASE could not be pulled (no registry reachable).
  ** Building on $STANDIN instead: Debian bookworm (debootstrap) with Debian's Python
  ** $(podman run --rm --network none "${ULIMITS[@]}" "$STANDIN" python3 -c 'import platform; print(platform.python_version())' 2>/dev/null || echo 3.11),
  ** symlinked to /usr/local/bin/python like the official image. Everything above the base is built and
  ** tested as with the real one; the image size differs by the two bases' difference.
  ******************************************************************************************************
EOF
fi
echo "base: $BASE"

# --- 3. wheelhouse ---------------------------------------------------------------------------------------
step "wheelhouse (host pip, pinned to the versions in $PYTHON's environment)"
[ -x "$PYTHON" ] || fail "$PYTHON not found (run 'make install' first, or set PYTHON)"
rm -rf build/wheelhouse
mkdir -p build/wheelhouse
"$PYTHON" scripts/container_requirements.py cpu >"$WORK/requirements.txt"
"$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v ' @ ' >"$WORK/constraints.txt" || true
tf_version=$(sed -n 's/^tensorflow==//p' "$WORK/constraints.txt")
[ -z "$tf_version" ] || echo "tensorflow-cpu==$tf_version" >>"$WORK/constraints.txt"
"$PYTHON" -m pip wheel --quiet --wheel-dir build/wheelhouse -r "$WORK/requirements.txt" -c "$WORK/constraints.txt" \
    'setuptools>=68' wheel 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2) \
    || fail "pip wheel could not fill the wheelhouse"
echo "$(find build/wheelhouse -name '*.whl' | wc -l) wheels, $(du -sh build/wheelhouse | cut -f1)"

# --- 4. build ----------------------------------------------------------------------------------------------
step "build $IMAGE (VARIANT=cpu, no network)"
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
"${PODMAN[@]}" build "${ULIMITS[@]}" --network none --build-arg "PYTHON_IMAGE=$BASE" --build-arg VARIANT=cpu \
    -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; fail "image build failed"; }
echo "$(grep -c "STEP" "$WORK/build.log" || true) steps, $(grep -c "Using cache" "$WORK/build.log" || true) from the layer cache"
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
# Keep the disk bounded: drop the image this build replaced and all but the newest `wheels` stage (the layer
# cache of the next build needs only the newest).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
podman image ls --filter label=io.github.neurocare-bids.stage=wheels --sort created --format '{{.ID}}' \
    | tail -n +2 | xargs -r podman rmi >/dev/null 2>&1 || true
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
echo "image size $((size / 1000000)) MB (base $((base_size / 1000000)) MB, NeuroCare layers $(((size - base_size) / 1000000)) MB)"

# --- 5. run it as fMRIPrep's CI does ------------------------------------------------------------------------
mkdir -p "$WORK/bids" "$WORK/out"
chmod 0777 "$WORK/bids" "$WORK/out"          # written by uid 1234 inside the container
run() {  # run the image read-only, offline, as an arbitrary user; input read-only, output writable
    "${PODMAN[@]}" run --rm --read-only --network none --user 1234:1234 "${ULIMITS[@]}" \
        -v "$WORK/bids:/data/bids:ro" -v "$WORK/out:/data/out:rw" \
        -v "$REPO/tests/container/quick.toml:/data/quick.toml:ro" "$@"
}

step "--version"
version=$(run "$IMAGE" --version) || fail "--version exited with $?"
label=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.version"}}' "$IMAGE")
package=$("$PYTHON" -c 'import neurocare_bids; print(neurocare_bids.__version__)')
echo "$version (label $label, package $package)"
if [ "$version" != "NeuroCare-BIDS $package" ] || [ "$label" != "$package" ]; then fail "version mismatch"; fi

step "image content: non-root default user, no compilers, no writes into the image"
default_user=$("${PODMAN[@]}" run --rm --read-only --network none "${ULIMITS[@]}" --entrypoint id "$IMAGE" -u)
[ "$default_user" = 1000 ] || fail "default user is $default_user, expected 1000"
# shellcheck disable=SC2016  # $c is expanded by the container's shell
compilers=$("${PODMAN[@]}" run --rm --read-only --network none "${ULIMITS[@]}" --entrypoint sh "$IMAGE" \
    -c 'for c in gcc cc g++ c++ clang; do command -v "$c"; done; true')
[ -z "$compilers" ] || fail "compilers in the runtime image: $compilers"
echo "default user uid 1000; no compiler in the image"

step "demo dataset (written by the image into a writable mount)"
"${PODMAN[@]}" run --rm --read-only --network none --user 1234:1234 "${ULIMITS[@]}" -v "$WORK/bids:/data/bids:rw" \
    "$IMAGE" demo-data /data/bids/demo --subjects 3 --recordings 1 --duration 300 || fail "demo-data failed"
BIDS_IN=/data/bids/demo
find "$WORK/bids/demo" -type f -exec md5sum {} + | sort >"$WORK/bids.md5"

step "participant level (input read-only, BIDS validation offline)"
run "$IMAGE" "$BIDS_IN" /data/out participant --nprocs 2 || fail "participant level exited with $?"

step "group level (tiny model, leave-one-subject-out over 3 subjects)"
run "$IMAGE" "$BIDS_IN" /data/out group --config /data/quick.toml || fail "group level exited with $?"

step "singularity.def %test (its commands, run by sh in the image as Apptainer would run them)"
awk '/^%test/{f=1; next} /^%/{f=0} f' singularity.def >"$WORK/singularity-test.sh"
"${PODMAN[@]}" run --rm --read-only --network none --user 4321:4321 "${ULIMITS[@]}" \
    -v "$WORK/singularity-test.sh:/singularity-test.sh:ro" --entrypoint /bin/sh "$IMAGE" /singularity-test.sh \
    || fail "the %test section of singularity.def failed"

# --- 6. outputs --------------------------------------------------------------------------------------------
step "outputs"
find "$WORK/bids/demo" -type f -exec md5sum {} + | sort | cmp -s - "$WORK/bids.md5" || fail "the input dataset changed"
owners=$(find "$WORK/out" -mindepth 1 -printf '%u:%g\n' | sort -u | tr '\n' ' ')
[ "$owners" = "1234:1234 " ] || fail "outputs not all owned by 1234:1234: $owners"
# Volatile names (run folders: UTC time, host, id; TensorBoard event files: time, host, pid) are normalised.
(cd "$WORK/out" && find . -mindepth 1 | sed 's|^\./||' | sort) \
    | sed -E 's#^logs/(participant|group)_[0-9]{8}T[0-9]{6}Z_[^/]+#logs/\1_<run>#' \
    | sed -E 's#events\.out\.tfevents\..*\.v2$#events.out.tfevents.<stamp>.v2#' >"$WORK/outputs.txt"
if [ "${UPDATE_EXPECTED:-0}" = 1 ]; then
    { echo "# Output files of the container smoke test (scripts/container_test.sh); volatile names normalised."
      cat "$WORK/outputs.txt"; } >"$EXPECTED"
    echo "rewrote $EXPECTED"
fi
if ! diff -u <(grep -v '^#' "$EXPECTED") "$WORK/outputs.txt"; then
    fail "output files differ from $EXPECTED (rerun with UPDATE_EXPECTED=1 if the change is intended)"
fi
echo "$(wc -l <"$WORK/outputs.txt") output paths as expected, all owned by 1234:1234, input unchanged"

step "summary"
if [ "$STANDIN_USED" = 1 ]; then
    echo "container-test: PASSED on a STAND-IN base image ($STANDIN instead of $REAL_BASE)"
else
    echo "container-test: PASSED on $REAL_BASE"
fi
echo "image $IMAGE: $((size / 1000000)) MB; $((SECONDS - START)) s in all"
