#!/bin/bash
# The load generator before (6dbb7f5) and after (dc4ca19) the reporter stopped holding the
# producers' lock while it built the next interval, alternating, 3 runs each, each a probe
# after a 60 s preload (the broker's page-cache budget full: see README). The broker is the
# same code in both binaries.
#   OLD=/tmp/apus-oldgen NEW=/tmp/apus-newgen OUT=/tmp/ab-gen scripts/ab-generator.sh
set -u
DIR=$(cd $(dirname $0) && pwd)
for i in 1 2 3; do
  for side in old new; do
    BIN=$([ $side = old ] && echo $OLD || echo $NEW)
    BIN=$BIN RATE=2400000 PRE=60 PERF=0 OUT=$OUT/$side-$i $DIR/capture.sh
  done
done
