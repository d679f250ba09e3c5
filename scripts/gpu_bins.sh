# Sourced by the GPU scripts (bench_gpu.sh, gpu_checks.sh, gpu_cli_checks.sh): where the
# evalverse binaries for the GPU machine are, and how to unpack them.

# The default folder of the binaries: target/gpu (scripts/build_gpu_bins.sh), else a local build.
gpu_bin_dir() {
  if [ -d target/gpu ]; then echo target/gpu; else echo target/release/examples; fi
}

# unpack_gpu_bin DIR NAME DEST: DIR/NAME.xz (unpacked with python's lzma: xz may be missing on the
# GPU machine, python3 is there with torch) or DIR/NAME, to DEST/NAME, executable.
unpack_gpu_bin() {
  mkdir -p "$3"
  if [ -f "$1/$2.xz" ]; then
    "${PYTHON:-python3}" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$1/$2.xz" "$3/$2"
  elif [ -f "$1/$2" ]; then
    cp "$1/$2" "$3/$2"
  else
    echo "no $2 in $1 (scripts/build_gpu_bins.sh builds it)" >&2
    return 1
  fi
  chmod +x "$3/$2"
}
