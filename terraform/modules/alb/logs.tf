# The ALB's access logs, in a bucket this module makes when no existing one is named: one line
# per request (each WebSocket upgrade included: client address, status, TLS, target), for incident
# review and abuse reports. Delivery needs the bucket policy AWS documents
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html):
# the region's Elastic Load Balancing account in regions older than August 2022, the log-delivery
# service principal in newer ones. SSE-S3 only (ALB cannot deliver to a KMS-encrypted bucket).
locals {
  own_logs_bucket = var.access_logs_bucket == "" && var.access_logs_retention_days > 0
  logs_bucket     = var.access_logs_bucket != "" ? var.access_logs_bucket : one(aws_s3_bucket.logs[*].id)
  # Regions opened from August 2022 on: their ALBs deliver as the service principal.
  new_regions = ["ap-south-2", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-west-1",
  "eu-central-2", "eu-south-2", "il-central-1", "me-central-1", "mx-central-1"]
  logs_by_service = contains(local.new_regions, data.aws_region.current.name)
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_elb_service_account" "this" {
  count = local.own_logs_bucket && !local.logs_by_service ? 1 : 0
}

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This bucket receives access logs; logging its own access would log the logging.
  #checkov:skip=CKV_AWS_21:Log objects are written once and expire; versions would only keep deleted ones.
  #checkov:skip=CKV_AWS_144:Cross-region replication of access logs is a per-organisation choice.
  #checkov:skip=CKV_AWS_145:ALB access logs support SSE-S3 only, not KMS.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new log objects.
  count  = local.own_logs_bucket ? 1 : 0
  bucket = "${var.name}-alb-logs-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  # With deletion protection off (trials), a destroy takes the logs with it.
  force_destroy = !var.deletion_protection
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "logs" {
  count                   = local.own_logs_bucket ? 1 : 0
  bucket                  = aws_s3_bucket.logs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  count  = local.own_logs_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  count  = local.own_logs_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  count  = local.own_logs_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_logs_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "logs" {
  count = local.own_logs_bucket ? 1 : 0
  statement {
    sid       = "AlbDelivers"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs[0].arn}/${var.name}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = local.logs_by_service ? "Service" : "AWS"
      identifiers = local.logs_by_service ? ["logdelivery.elasticloadbalancing.amazonaws.com"] : [data.aws_elb_service_account.this[0].arn]
    }
  }
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs[0].arn, "${aws_s3_bucket.logs[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  count  = local.own_logs_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  policy = data.aws_iam_policy_document.logs[0].json
  # The policy must exist before the ALB is told to write there (it checks at once).
  depends_on = [aws_s3_bucket_public_access_block.logs]
}
