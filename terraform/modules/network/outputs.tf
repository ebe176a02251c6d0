output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "CIDR of the VPC (the default source range of the admin ports)."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone (ALB, NAT gateways)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone (leaders, workers); known once their NAT routes exist."
  value       = aws_subnet.private[*].id
  # Nodes reach SSM, CloudWatch and Auto Scaling through the NAT gateway from their first boot
  # (ews-configure fetches the secrets): nothing is placed in these subnets before the route.
  depends_on = [aws_route.private_nat, aws_route_table_association.private]
}
