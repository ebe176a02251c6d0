# The workers' custom termination policy (lambdas/src/terminate.rs, binary ews-terminate): on a
# scale-in EC2 Auto Scaling asks it which worker to remove, and it answers with the one holding
# the fewest clients, from the per-worker metric the active leader publishes. Listed before
# NewestInstance in the group's termination policies
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/lambda-custom-termination-policy.html).
# It serves either scaling mode.
locals {
  least_loaded = var.least_loaded_termination && local.publish_metric
  terminate_fn = "${var.name}-terminate"
}

resource "aws_cloudwatch_log_group" "terminate" {
  #checkov:skip=CKV_AWS_158:Termination-policy logs hold no sensitive data; AWS-managed encryption at rest is enough.
  #checkov:skip=CKV_AWS_338:Retention is the variable log_retention_days (operational logs, 30 days by default).
  count             = local.least_loaded ? 1 : 0
  name              = "/aws/lambda/${local.terminate_fn}"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "terminate_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# Least privilege: read metrics (GetMetricData has no resource-level permissions), write logs.
data "aws_iam_policy_document" "terminate" {
  count = local.least_loaded ? 1 : 0
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.terminate[0].arn}:*"]
  }
  statement {
    sid       = "ReadWorkerCounts"
    actions   = ["cloudwatch:GetMetricData"]
    resources = ["*"]
  }
}

resource "aws_iam_role" "terminate" {
  count              = local.least_loaded ? 1 : 0
  name               = "${local.terminate_fn}-${data.aws_region.current.name}"
  assume_role_policy = data.aws_iam_policy_document.terminate_assume.json
}

resource "aws_iam_role_policy" "terminate" {
  count  = local.least_loaded ? 1 : 0
  name   = local.terminate_fn
  role   = aws_iam_role.terminate[0].id
  policy = data.aws_iam_policy_document.terminate[0].json
}

resource "aws_lambda_function" "terminate" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing adds cost and permissions for a once-per-scale-in function; logs suffice.
  #checkov:skip=CKV_AWS_116:Called synchronously by EC2 Auto Scaling, which falls back to the next termination policy when it fails; no asynchronous event to keep.
  #checkov:skip=CKV_AWS_117:Talks only to AWS APIs; a VPC would add NAT dependencies and no protection.
  #checkov:skip=CKV_AWS_173:The environment holds names only, no secrets.
  #checkov:skip=CKV_AWS_272:Code signing needs an organisation's signing profile; CI builds the zip from this repository.
  count            = local.least_loaded ? 1 : 0
  function_name    = local.terminate_fn
  description      = "${var.name}: ews-terminate (elastic-ws termination policy: the least-loaded worker)"
  role             = aws_iam_role.terminate[0].arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${local.lambda_zip_dir}/ews-terminate/bootstrap.zip"
  source_code_hash = filebase64sha256("${local.lambda_zip_dir}/ews-terminate/bootstrap.zip")
  memory_size      = 128
  timeout          = 10
  # The group needs a qualified ARN (a version).
  publish = true
  # Unreserved: reserving fails on accounts with a low concurrency quota (see the scalers).
  reserved_concurrent_executions = -1

  environment {
    variables = {
      METRIC_NAMESPACE = var.cloudwatch_namespace
      DEPLOYMENT       = var.name
    }
  }

  depends_on = [aws_cloudwatch_log_group.terminate]
}

# EC2 Auto Scaling calls the function with its service-linked role.
resource "aws_lambda_permission" "terminate" {
  count         = local.least_loaded ? 1 : 0
  statement_id  = "AllowAutoScalingTermination"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.terminate[0].function_name
  qualifier     = aws_lambda_function.terminate[0].version
  principal     = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
}

# A failing termination policy falls back to NewestInstance: worth a look, not a page.
resource "aws_cloudwatch_metric_alarm" "terminate_errors" {
  count               = local.least_loaded ? 1 : 0
  alarm_name          = "${local.terminate_fn}-errors"
  alarm_description   = "${var.name}: ${local.terminate_fn} failed; scale-in fell back to NewestInstance. See its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.terminate[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
}
