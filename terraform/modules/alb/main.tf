# Public Application Load Balancer in front of the workers. WebSockets upgrade over plain HTTP
# listeners; the target group checks /info and keeps a deregistered worker's connections for the
# drain window.
locals {
  https = var.certificate_arn != ""
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Deletion protection is a variable (deletion_protection), off so that trials can be torn down.
  #checkov:skip=CKV2_AWS_28:The WAF is an option (waf_rate_limit, waf.tf); off in trials.
  #checkov:skip=CKV2_AWS_76:The optional WAF (waf.tf) carries AWSManagedRulesKnownBadInputsRuleSet, the Log4j rules; checkov cannot follow its count.
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.subnet_ids
  security_groups            = [var.security_group_id]
  idle_timeout               = var.idle_timeout_secs
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = local.logs_bucket == null ? [] : [local.logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  # The bucket's policy first: the ALB checks that it may write there.
  depends_on = [aws_s3_bucket_policy.logs]

  tags = var.tags
}

resource "aws_lb_target_group" "workers" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; ALB-to-worker traffic stays inside the VPC's private subnets.
  name                 = "${var.name}-workers"
  vpc_id               = var.vpc_id
  port                 = var.target_port
  protocol             = "HTTP"
  target_type          = "instance"
  deregistration_delay = var.deregistration_delay_secs

  health_check {
    path                = var.health_check_path
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.workers.arn
  }

  tags = var.tags
}

# With a certificate port 80 only redirects to HTTPS; without one it serves ws:// for trials.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP forwards only when no certificate_arn is given (trials); otherwise it redirects to HTTPS.
  #checkov:skip=CKV_AWS_103:Same listener: TLS applies to the HTTPS listener, which exists whenever a certificate is given.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.workers.arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  tags = var.tags
}
