#!/usr/bin/env bash
# Tiny silent H.264 clips for the `evalverse data import` tests (tests/fixtures/import/videos/).
# The JSON and CSV fixtures beside them are written by hand. Run from the repository root.
set -euo pipefail
out=tests/fixtures/import/videos
mkdir -p "$out/kling1.5" "$out/minimax"
i=0
for clip in kling1.5/kling1.5_00001 kling1.5/kling1.5_00002 minimax/minimax_00001 minimax/minimax_00002; do
  i=$((i + 1))
  ffmpeg -loglevel error -y -f lavfi -i "testsrc=size=64x48:rate=8,hue=h=$((i * 70))" -frames:v 8 \
    -c:v libx264 -preset veryslow -crf 40 -pix_fmt yuv420p -threads 1 \
    -fflags +bitexact -flags:v +bitexact -map_metadata -1 "$out/$clip.mp4"
done
ls -l "$out"/*/*.mp4
