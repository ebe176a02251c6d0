#!/usr/bin/env bash
# moto: the AWS API emulator the Lambda and leader tests talk to.
source "$(dirname "$0")/lib.sh"
ensure_venv moto 3.11 'moto[server]==5.2.5'
