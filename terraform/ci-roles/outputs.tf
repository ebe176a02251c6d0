output "package_role_arn" {
  description = "The project's CI/CD variable AWS_ROLE_ARN."
  value       = aws_iam_role.package.arn
}

output "plan_role_arn" {
  description = "The project's CI/CD variable AWS_PLAN_ROLE_ARN."
  value       = aws_iam_role.plan.arn
}

output "deploy_role_arn" {
  description = "The project's CI/CD variable AWS_DEPLOY_ROLE_ARN (scoped to the environments staging and production)."
  value       = aws_iam_role.deploy.arn
}
