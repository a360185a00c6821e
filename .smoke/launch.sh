#!/bin/bash
# usage: launch.sh SIZE script [env...]
SIZE=$1; SCRIPT=$2; shift 2
PORT=$((20000 + RANDOM % 20000))
for ((r=0; r<SIZE; r++)); do env "$@" RANK=$r WORLD_SIZE=$SIZE MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT node --import tsx $SCRIPT & done
wait
