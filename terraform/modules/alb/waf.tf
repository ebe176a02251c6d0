# An optional AWS WAF web ACL on the ALB (waf_rate_limit > 0). It sees each WebSocket's upgrade
# request, never its frames, so it costs nothing per message: it blocks addresses on Amazon's
# reputation list, requests carrying known exploit patterns, and an address opening more than
# waf_rate_limit connections in five minutes (a reconnect storm from one NAT is many clients: set
# it from what one address of yours may hold). Every rule starts counting only with
# waf_count_only, to watch before blocking.
# https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-list.html,
# https://docs.aws.amazon.com/waf/latest/developerguide/waf-rule-statement-type-rate-based.html
locals {
  waf_on = var.waf_rate_limit > 0
  waf_managed = {
    AWSManagedRulesAmazonIpReputationList = 1
    AWSManagedRulesKnownBadInputsRuleSet  = 2
  }
}

resource "aws_wafv2_web_acl" "this" {
  #checkov:skip=CKV2_AWS_31:WAF logging goes to a log destination a team chooses (Firehose, S3 or Logs); the sampled requests and metrics are on.
  #checkov:skip=CKV_AWS_192:The Log4j rule group (AWSManagedRulesKnownBadInputsRuleSet) is in the ACL.
  count       = local.waf_on ? 1 : 0
  name        = "${var.name}-alb"
  description = "elastic-ws ${var.name}: in front of the WebSocket ALB"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  dynamic "rule" {
    for_each = local.waf_managed
    content {
      name     = rule.key
      priority = rule.value
      override_action {
        dynamic "none" {
          for_each = var.waf_count_only ? [] : [1]
          content {}
        }
        dynamic "count" {
          for_each = var.waf_count_only ? [1] : []
          content {}
        }
      }
      statement {
        managed_rule_group_statement {
          vendor_name = "AWS"
          name        = rule.key
        }
      }
      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = "${var.name}-${rule.key}"
        sampled_requests_enabled   = true
      }
    }
  }

  rule {
    name     = "connections-per-address"
    priority = 10
    action {
      dynamic "block" {
        for_each = var.waf_count_only ? [] : [1]
        content {}
      }
      dynamic "count" {
        for_each = var.waf_count_only ? [1] : []
        content {}
      }
    }
    statement {
      rate_based_statement {
        limit                 = var.waf_rate_limit
        evaluation_window_sec = 300
        aggregate_key_type    = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-connections-per-address"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-alb"
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "this" {
  count        = local.waf_on ? 1 : 0
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}
