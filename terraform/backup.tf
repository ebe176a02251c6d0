# Backups of the built-in queue (sink = "queue"): AWS Backup snapshots both leaders' data volumes
# every day and keeps each snapshot queue_backup_retention_days. An acknowledged event lives on
# one leader's volume until a consumer reads it; a volume lost to an AZ failure or an operator's
# mistake between snapshots takes at most a day of them, and the snapshot restores the rest
# (docs/deploy.md, "Backups"). https://docs.aws.amazon.com/aws-backup/latest/devguide/creating-a-backup-plan.html
locals {
  queue_backup = var.sink == "queue" && var.queue_backup_retention_days > 0
}

resource "aws_backup_vault" "queue" {
  #checkov:skip=CKV_AWS_166:The AWS-managed aws/backup key encrypts the recovery points; a customer-managed key is a per-organisation choice.
  count = local.queue_backup ? 1 : 0
  name  = "${var.name}-queue"
  # A vault holding recovery points cannot be deleted: destroying the deployment keeps them (and
  # fails on the vault) unless queue_backup_force_destroy says they may go.
  force_destroy = var.queue_backup_force_destroy
  tags          = var.tags
}

resource "aws_backup_plan" "queue" {
  count = local.queue_backup ? 1 : 0
  name  = "${var.name}-queue"
  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.queue[0].name
    schedule          = var.queue_backup_schedule
    start_window      = 60
    completion_window = 180
    lifecycle {
      delete_after = var.queue_backup_retention_days
    }
  }
  tags = var.tags
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  count              = local.queue_backup ? 1 : 0
  name               = "${var.name}-backup-${data.aws_region.current.name}"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
  tags               = var.tags
}

# AWS's policy for taking backups (snapshots of the selected volumes, nothing else).
resource "aws_iam_role_policy_attachment" "backup" {
  count      = local.queue_backup ? 1 : 0
  role       = aws_iam_role.backup[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_backup_selection" "queue" {
  count        = local.queue_backup ? 1 : 0
  name         = "${var.name}-queue-volumes"
  plan_id      = aws_backup_plan.queue[0].id
  iam_role_arn = aws_iam_role.backup[0].arn
  resources    = module.leaders.data_volume_arns
}
