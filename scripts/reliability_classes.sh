#!/usr/bin/env bash
# Each class of bad input and fault in docs/RELIABILITY.md ("Classes of bad input and fault"),
# tried on the binary BIN: a bad manifest line, dataset.toml, taxonomy and recipe, damaged
# safetensors and config.json, an altered judge bundle, bad score lists, an unreadable video,
# NaN weights, a full disk (score and train) and a killed run. Prints each command, the first
# lines of its output and its exit code. Needs a quickstart's runs/quickstart/{base,judge} and
# target/test-assets (scripts/fetch_test_assets.sh); the full-disk cases mount small tmpfs file
# systems, so they need root. Scratch files go to $T (default /tmp/evalverse-reliability).
#   bash scripts/reliability_classes.sh target/debug/evalverse
set -u
BIN=$(realpath "$1")
cd "$(dirname "$0")/.."
REPO=$PWD
T=${T:-/tmp/evalverse-reliability}
rm -rf $T; mkdir -p $T
V=data/sample/videos/pg000_aurora.mp4
try() { echo "\$ $*"; "$@" >$T/out 2>&1; rc=$?; grep -v '^\s*$' $T/out | head -${LINES_SHOWN:-4} | cut -c1-300; echo "-> exit $rc"; echo; }
cp -r data/sample $T/ds
echo "## 1 bad manifest line"
sed -i '3s/.*/{"record": "clip", "id": "broken",/' $T/ds/manifest.jsonl
sed -i '5s/"score":4/"score":"four"/' $T/ds/manifest.jsonl
try $BIN data validate $T/ds --no-decode
echo "## 2 bad dataset.toml"
cp -r data/sample $T/ds2; sed -i 's/^train = 0.6/train = 0.9/' $T/ds2/dataset.toml
try $BIN data validate $T/ds2 --no-decode
cp -r data/sample $T/ds2b; echo 'manifets = "x.jsonl"' >> $T/ds2b/dataset.toml
try $BIN data validate $T/ds2b --no-decode
echo "## 3 bad taxonomy"
cp -r data/sample $T/ds3; sed -i 's/^taxonomy = .*/taxonomy = "tax.toml"/' $T/ds3/dataset.toml
sed 's/^step = 1$/step = 0/' configs/taxonomy/evalverse.toml > $T/ds3/tax.toml
try $BIN data validate $T/ds3 --no-decode
echo "## 4 bad recipe"
sed 's/decay = "cosine"/decay = "exponential"/; s#output_dir = .*#output_dir = "'$T'/run_bad"#' recipes/tiny/sft.toml > $T/bad_recipe.toml
try $BIN train $T/bad_recipe.toml
echo "run folder left behind: $(ls $T/run_bad 2>/dev/null | tr '\n' ' ')"
echo
echo "## 5 damaged safetensors"
cp -r runs/quickstart/base $T/base_trunc; truncate -s 1000000 $T/base_trunc/model.safetensors
try $BIN judge $V --prompt "A scene." --checkpoint none --base $T/base_trunc --dimensions lens
cp -r runs/quickstart/base $T/base_hdr; printf '\xff\xff\xff\xff' | dd of=$T/base_hdr/model.safetensors bs=1 seek=0 conv=notrunc 2>/dev/null
try $BIN judge $V --prompt "A scene." --checkpoint none --base $T/base_hdr --dimensions lens
echo "## 6 malformed / missing config.json"
cp -r runs/quickstart/base $T/base_cfg; head -c 200 runs/quickstart/base/config.json > $T/base_cfg/config.json
try $BIN judge $V --prompt "A scene." --checkpoint none --base $T/base_cfg --dimensions lens
cp -r runs/quickstart/base $T/base_nocfg; rm $T/base_nocfg/config.json
try $BIN judge $V --prompt "A scene." --checkpoint none --base $T/base_nocfg --dimensions lens
echo "## 7 damaged or altered judge bundle"
cp -r runs/quickstart/judge $T/judge_alt; echo "edited" >> $T/judge_alt/README.md
try $BIN judge $V --prompt "A scene." --judge $T/judge_alt --dimensions lens
cp -r runs/quickstart/judge $T/judge_json; head -c 300 runs/quickstart/judge/judge.json > $T/judge_json/judge.json
try $BIN judge $V --prompt "A scene." --judge $T/judge_json --dimensions lens
echo "## 8 bad score list"
printf 'video,prompt,score\na.mp4,p,3\n' > $T/list.csv
try $BIN score $T/list.csv --judge runs/quickstart/judge --out $T/scores.jsonl
printf '{"video": "%s", "prompt": "A scene.", "dimensions": ["lens"]}\n{"video": 3}\n{"video": "missing.mp4", "prompt": "p", "dimensions": ["lens"]}\n' $REPO/$V > $T/list.jsonl
try $BIN score $T/list.jsonl --judge runs/quickstart/judge --out $T/scores.jsonl
echo "lines in the output: $(wc -l < $T/scores.jsonl); errors: $(grep -c '"error"' $T/scores.jsonl)"
echo
echo "## 9 unreadable video"
echo "not a video" > $T/bad.mp4
try $BIN judge $T/bad.mp4 --prompt "A scene." --judge runs/quickstart/judge --dimensions lens
echo "## 10 NaN weights"
cp -r runs/quickstart/base $T/base_nan
python3 - $T/base_nan/model.safetensors <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
t = h['model.norm.weight']
s, e = t['data_offsets']
assert t['dtype'] == 'F32'
b[8 + n + s:8 + n + e] = struct.pack('<f', float('nan')) * ((e - s) // 4)
open(p, 'wb').write(b)
PY
try $BIN judge $V --prompt "A scene." --checkpoint none --base $T/base_nan --dimensions lens
echo "## 11 full disk"
# A 64 KiB file system, filled but for 2 KiB: the first batch of results does not fit.
mkdir -p $T/full; mount -t tmpfs -o size=64k tmpfs $T/full
head -c $((62 * 1024)) /dev/zero > $T/full/filler
try $BIN score $T/list.jsonl --judge runs/quickstart/judge --out $T/full/scores.jsonl
echo "left in scores.jsonl: $(wc -c < $T/full/scores.jsonl 2>/dev/null || echo none) bytes"
umount $T/full

echo "## 12 killed run, and a full disk during training"
try $BIN model init --out $T/tinybase --tokenizer $REPO/target/test-assets/qwen-tokenizer.json
mk_recipe() {  # OUTPUT_DIR STEPS
  sed "s#^output_dir = .*#output_dir = \"$1\"#; s#^source = .*#source = \"$T/tinybase\"#; s#^max_steps = .*#max_steps = $2#; s#^save_every = .*#save_every = 2#" recipes/tiny/sft.toml
}
mk_recipe $T/run_killed 8 > $T/killed.toml
grep -q '^save_every' $T/killed.toml || sed -i 's/^\[train\]$/[train]\nsave_every = 2/' $T/killed.toml
$BIN train $T/killed.toml > $T/train.out 2>&1 &
pid=$!
# Killed after step 5 is logged: the last checkpoint is step 4.
until [ "$(cat $T/run_killed/metrics.jsonl 2>/dev/null | grep -c loss)" -ge 5 ] || ! kill -0 $pid 2>/dev/null; do sleep 0.1; done
kill -9 $pid; wait $pid 2>/dev/null
echo "killed -9 after: $(ls $T/run_killed/checkpoints | tr '\n' ' ')"
echo "metrics steps before resume: $(python3 -c "import json,sys; print([json.loads(l)['step'] for l in open('$T/run_killed/metrics.jsonl') if 'loss' in l])" 2>&1)"
try $BIN train $T/killed.toml
try $BIN train $T/killed.toml --resume
echo "metrics steps after resume: $(python3 -c "import json,sys; print([json.loads(l)['step'] for l in open('$T/run_killed/metrics.jsonl') if 'loss' in l])" 2>&1)"
echo
# The run folder on a 400 KiB file system (the decode cache elsewhere): the checkpoint of step 2
# (256 KiB) fits, the one of step 4 does not.
mkdir -p $T/small; mount -t tmpfs -o size=${TRAIN_DISK:-400k} tmpfs $T/small
mk_recipe $T/small/run 8 | sed "s#^dataset = .*#&\ncache_dir = \"$T/run_killed/cache\"#" > $T/small.toml
grep -q '^save_every' $T/small.toml || sed -i 's/^\[train\]$/[train]\nsave_every = 2/' $T/small.toml
LINES_SHOWN=6 try $BIN train $T/small.toml
echo "left in the run folder: $(cd $T/small/run 2>/dev/null && find . -maxdepth 3 | sort | tr '\n' ' ')"
echo "metrics steps: $(python3 -c "import json; print([json.loads(l)['step'] for l in open('$T/small/run/metrics.jsonl') if 'loss' in l])" 2>&1)"
umount $T/small
