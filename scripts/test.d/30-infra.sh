#!/usr/bin/env bash
# Infrastructure: the offline checks must pass on this tree, the provisioning must work in a
# throwaway root, the image lifecycle script must keep and delete the right AMIs, and the checks
# must catch purpose-made mistakes in a broken copy.
set -euo pipefail
cd "$(dirname "$0")/../.."
rc=0
bash scripts/check-infra.sh || rc=1
bash tests/infra/test_provision.sh || rc=1
bash tests/infra/test_amis.sh || rc=1
bash tests/infra/test_negative.sh || rc=1
exit "$rc"
