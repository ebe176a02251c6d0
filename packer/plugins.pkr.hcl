# Plugin pins for `packer init` (Packer >= 1.7). Kept in its own file because the offline checker
# (Debian's Packer 1.6.6, with the Amazon builder built in) rejects this block: check-infra.sh
# validates a copy of this directory without it.
packer {
  required_version = ">= 1.9.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.3"
    }
  }
}
