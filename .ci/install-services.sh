#!/usr/bin/env bash
# Install the real services the integration and e2e harnesses start on this host:
# Slurm (controller, node daemon, client) with munge, PostgreSQL, and Chromium.
#
# Idempotent: packages already installed are skipped, so a second run is fast and
# does not touch the network. Nothing is purged: purging Slurm's dependencies can
# remove Chromium (they share a library), so both stay installed.
# apt-get never starts daemons on this machine kind (no systemd); the harnesses in
# tests/harness/ start and stop their own.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Groups installed with one apt-get call each; "--no-install-recommends" keeps
# Slurm from dragging in slurmdbd/mariadb and the like.
slurm_pkgs=(slurmctld slurmd slurm-client munge)
postgres_pkgs=(postgresql)
browser_pkgs=(chromium chromium-driver)

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    sudo_cmd=(sudo)
fi

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing_of() {
    local pkg
    for pkg in "$@"; do
        if ! is_installed "$pkg"; then
            printf '%s\n' "$pkg"
        fi
    done
}

start=$(date +%s)
updated=0
installed=()

apt_install() {
    # $1: extra apt flags (may be empty); rest: packages wanted.
    local flags=$1
    shift
    local -a todo
    mapfile -t todo < <(missing_of "$@")
    if [[ ${#todo[@]} -eq 0 ]]; then
        return 0
    fi
    if [[ $updated -eq 0 ]]; then
        "${sudo_cmd[@]}" apt-get update -qq >/dev/null
        updated=1
    fi
    # shellcheck disable=SC2086  # flags is intentionally word-split
    "${sudo_cmd[@]}" apt-get install -y -qq $flags "${todo[@]}" >/dev/null
    installed+=("${todo[@]}")
}

apt_install "--no-install-recommends" "${slurm_pkgs[@]}"
apt_install "" "${postgres_pkgs[@]}"
apt_install "" "${browser_pkgs[@]}"

# Fail loudly if anything is still missing (e.g. a package renamed upstream).
mapfile -t still_missing < <(missing_of "${slurm_pkgs[@]}" "${postgres_pkgs[@]}" "${browser_pkgs[@]}")
if [[ ${#still_missing[@]} -gt 0 ]]; then
    echo "install-services: still missing: ${still_missing[*]}" >&2
    exit 1
fi

elapsed=$(($(date +%s) - start))
if [[ ${#installed[@]} -eq 0 ]]; then
    echo "install-services: all present (slurm, munge, postgresql, chromium), ${elapsed}s"
else
    echo "install-services: installed ${installed[*]} in ${elapsed}s"
fi
