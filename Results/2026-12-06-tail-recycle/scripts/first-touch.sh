#!/bin/bash
# Writes 1 GiB files in 1 MiB pwrites: into memory free for 5 s (fA, fC) and into pages just
# freed by deleting the previous file (fB, fD). Run as root (drop_caches); DIR on the disk.
set -eu
DIR=${1:-/tmp}; cd "$(dirname "$0")"; gcc -O2 -o /tmp/first-touch first-touch.c
cd "$DIR"; rm -f fA fB fC fD; sync; echo 3 > /proc/sys/vm/drop_caches; sleep 5
/tmp/first-touch fA 1024; sync; rm fA; /tmp/first-touch fB 1024; sync; rm fB; sleep 5
/tmp/first-touch fC 1024; sync; rm fC; /tmp/first-touch fD 1024; sync; rm -f fD
