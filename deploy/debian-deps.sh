#!/bin/sh
# Installs what shardrun needs to build, test and run on Debian 12: the
# packages listed in deploy/debian-packages.txt.
# Usage: sudo deploy/debian-deps.sh
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    $(grep -v '^#' "$(dirname "$0")/debian-packages.txt")
