# The events queue: with sink = "sqs" (the default) workers send every event to this SQS queue and
# acknowledge it to the client only once SQS has stored it. Consumers read it with any AWS SDK.
# Messages a consumer fails to process max_receive_count times move to the dead-letter queue
# instead of cycling forever. Both queues are encrypted at rest with SQS-managed keys.
resource "aws_sqs_queue" "events_dlq" {
  count                     = var.sink == "sqs" ? 1 : 0
  name                      = "${var.name}-events-dlq"
  message_retention_seconds = 1209600 # 14 days, the SQS maximum: time to inspect and redrive
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "events" {
  count                      = var.sink == "sqs" ? 1 : 0
  name                       = "${var.name}-events"
  message_retention_seconds  = var.sqs.retention_seconds
  visibility_timeout_seconds = var.sqs.visibility_timeout_seconds
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dlq[0].arn
    maxReceiveCount     = var.sqs.max_receive_count
  })
}
