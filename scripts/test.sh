#!/usr/bin/env bash
# Runs the test suite. On a machine without a Vulkan driver it first installs Mesa's lavapipe
# (software Vulkan), so the GPU tests run on the CPU; they fail, never skip, without an adapter.
set -euo pipefail
cd "$(dirname "$0")/.."

have_vulkan() {
    ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' &&
        ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1
}

if ! have_vulkan; then
    echo "scripts/test.sh: no Vulkan driver found; installing Mesa lavapipe (software Vulkan)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

# Mesa's device-select layer prints harmless "XDG_RUNTIME_DIR is invalid" lines without this.
export NODEVICE_SELECT=1
cargo test "$@"
