#!/usr/bin/env bash
# Install what evalverse needs on a fresh Debian 12 machine: FFmpeg 5.1 development libraries
# (video-rs / ffmpeg-next), clang (bindgen) and pkg-config. Idempotent: installs only what is
# missing. The Rust toolchain (cargo 1.80+) must already be on PATH.
set -euo pipefail

need_apt=0
for lib in libavcodec libavformat libavutil libswscale libswresample libavfilter libavdevice; do
  pkg-config --exists "$lib" 2>/dev/null || need_apt=1
done
command -v clang >/dev/null 2>&1 || need_apt=1
command -v pkg-config >/dev/null 2>&1 || need_apt=1
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt=1

if [ "$need_apt" = 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing FFmpeg dev libraries, clang and pkg-config with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
    libavfilter-dev libavdevice-dev clang libclang-dev pkg-config >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi
echo "setup: system packages ok ($(pkg-config --modversion libavcodec) libavcodec, $(clang --version | head -1))" >&2
