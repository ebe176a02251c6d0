# The smallest deployment for a first try: ws:// on port 80, no authentication, one NAT gateway.
# Never use no_auth for real clients.
name               = "ews-trial"
nat_gateway_per_az = false
leader_ami_id      = "ami-0123456789abcdef0"
worker_ami_id      = "ami-0fedcba9876543210"
auth = {
  no_auth = true
}
# Without authentication, only the ranges named here may connect (the plan refuses 0.0.0.0/0 with
# no_auth): put your own address here (curl https://checkip.amazonaws.com, then append /32).
client_cidrs = ["203.0.113.10/32"]

# Events go to the built-in durable queue on the active leader: nothing else to run, read it with
# `ews-queue read` over the node link. For production, the default sink is SQS.
sink       = "queue"
queue_name = "events"

# AWS's own target-tracking policy instead of the paper's scaler Lambdas: nothing to build with
# cargo-lambda for a first try. Production uses the default, scaling_mode = "lambda".
scaling_mode              = "target-tracking"
target_clients_per_worker = 40000

# The built-in queue's volumes are backed up daily (AWS Backup); a trial's destroy may take the
# recovery points with it.
queue_backup_retention_days = 7
queue_backup_force_destroy  = true
