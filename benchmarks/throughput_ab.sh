#!/bin/bash
# Answered requests/s and the server's RSS at 16, 32 and 64 clients (benchmarks/load_bench.py, verify / analyze /
# identify in turn over faces/examples), for the code at a base commit ("before") and this checkout ("after"),
# then this checkout with the int8 face and expression models. One server at a time, default settings.
#
#   benchmarks/throughput_ab.sh [base commit, default d136582] [seconds per level, default 60]
#
# Output: /tmp/stra-throughput/{before,after,after_int8}.txt; the `## ` lines are the table.
set -u
BASE=${1:-d136582}; D=${2:-60}
A=$(cd "$(dirname "$0")/.." && pwd); B=/tmp/stra-before-$BASE; OUT=/tmp/stra-throughput
PY=${PYTHON:-python}
mkdir -p $OUT
[ -d $B/stra_face ] || { mkdir -p $B && git -C $A archive $BASE | tar -x -C $B; }
run() {  # name, code folder, port, extra environment
  rm -f $OUT/$1.sqlite3*
  (cd $2 && exec env $4 STRA_GALLERY_PATH=$OUT/$1.sqlite3 STRA_PROVIDERS='["CPUExecutionProvider"]' PYTHONPATH=$2 \
     $PY -m stra_face.service.cli --port $3 --log-level warning > $OUT/$1.server.log 2>&1) &
  local server=$!
  for _ in $(seq 120); do curl -sf http://127.0.0.1:$3/v1/info > /dev/null && break; sleep 1; done
  echo "== $1 ($2 $4) load average $(cut -d' ' -f1 /proc/loadavg)" | tee $OUT/$1.txt
  PYTHONPATH=$A $PY $A/benchmarks/load_bench.py --url http://127.0.0.1:$3 --clients 16 32 64 --duration $D | tee -a $OUT/$1.txt
  kill $server; wait $server 2>/dev/null
}
M=$A/stra_face/assets/models
run before $B 8801 ""
run after $A 8802 ""
run after_int8 $A 8803 "STRA_EMBEDDING_MODEL=$M/dlib_resnet_v1_int8.onnx STRA_EXPRESSION_MODEL=$M/expression_int8.onnx"
grep -h "^==\|^## " $OUT/before.txt $OUT/after.txt $OUT/after_int8.txt
