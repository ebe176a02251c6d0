#!/usr/bin/env bash
# Autobahn TestSuite (WebSocket conformance, Python 2 only): `wstest -m fuzzingclient`, used by
# scripts/test.d/20-autobahn.sh against the worker's echo route.
source "$(dirname "$0")/lib.sh"
ensure_venv autobahn 2.7 'autobahntestsuite==0.8.2'
