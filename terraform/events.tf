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

# Nothing in the pipeline goes unnoticed (the SQS metrics:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html;
# SQS sends them every 5 minutes, hence the periods):
# - an event a consumer could not process reached the dead-letter queue;
# - a dead letter is 10 days old: SQS deletes it at 14 (its retention), so 4 days remain to
#   inspect and redrive it;
# - the oldest event waiting in the events queue is older than sqs.max_age_alarm_seconds: the
#   consumers are behind or down, and the queue's retention will start deleting events.
locals {
  events_alarms = var.sink == "sqs" ? {
    dead-letters = {
      queue     = aws_sqs_queue.events_dlq[0].name
      metric    = "ApproximateNumberOfMessagesVisible"
      threshold = 0
      what      = "events reached the dead-letter queue ${aws_sqs_queue.events_dlq[0].name} after ${var.sqs.max_receive_count} failed receives: inspect and redrive them (SQS deletes them after 14 days)"
    }
    dead-letters-expiring = {
      queue     = aws_sqs_queue.events_dlq[0].name
      metric    = "ApproximateAgeOfOldestMessage"
      threshold = 864000
      what      = "a dead letter in ${aws_sqs_queue.events_dlq[0].name} is 10 days old: SQS deletes it in 4 days"
    }
    oldest-event = {
      queue     = aws_sqs_queue.events[0].name
      metric    = "ApproximateAgeOfOldestMessage"
      threshold = var.sqs.max_age_alarm_seconds
      what      = "the oldest event in ${aws_sqs_queue.events[0].name} waited over ${var.sqs.max_age_alarm_seconds} s: consumers are behind or down (events are deleted after ${var.sqs.retention_seconds} s)"
    }
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "events" {
  for_each            = local.events_alarms
  alarm_name          = "${var.name}-events-${each.key}"
  alarm_description   = "${var.name}: ${each.value.what}."
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
  tags                = var.tags
}
