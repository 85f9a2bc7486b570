#!/bin/sh
# Installs what shardrun needs to build, test and run on Debian 12.
# Usage: sudo deploy/debian-deps.sh
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    build-essential cmake pkg-config \
    libnng-dev libprotobuf-c-dev protobuf-c-compiler libsodium-dev \
    libjansson-dev libxml2-dev libcmocka-dev \
    python3 python3-pytest python3-pytest-xdist \
    iproute2 procps git
