provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ Application = "elastic-ws", Deployment = var.name }, var.tags)
  }
}
