# A full deployment: `terraform apply -var-file=examples/production.tfvars` (after the AMIs and the
# Lambda zips exist; CI passes the AMI ids from the package stage instead).

name = "ews"

# The region is not set here: CI sets it from AWS_REGION (TF_VAR_region), locally pass
# -var region=... A var file always wins over TF_VAR_*, so setting it here would silently override
# the region the AMIs were built in.
#
# Network: two zones, a NAT gateway in each so a zone outage leaves the other half working.
# The zones must be in the deployment's region (the plan stops with an error otherwise); leave
# availability_zones out to take the region's first two.
vpc_cidr           = "10.40.0.0/16"
availability_zones = ["eu-central-1a", "eu-central-1b"]
nat_gateway_per_az = true
# SQS (the events), CloudWatch Logs and SSM through the VPC instead of the NAT gateways
# (docs/deploy.md, "What it costs": ≈ $53 a month, worth it from ≈ 1.2 TB a month through them).
interface_endpoints = ["sqs", "logs", "ssm"]
client_cidrs        = ["0.0.0.0/0"]
admin_cidrs         = ["10.40.0.0/16"]

# AMIs from `packer build packer/` (the package stage prints them).
leader_ami_id = "ami-0123456789abcdef0"
worker_ami_id = "ami-0fedcba9876543210"

leader_instance_type = "t3.medium"
worker_instance_type = "c6i.large"
root_volume_size_gb  = 20

# 2..10 workers of 100,000 clients each, a step of 80,000 per worker (docs/scaling.md).
worker_min_size    = 2
worker_max_size    = 10
worker_max_clients = 100000
step               = 80000
hysteresis         = 8000

# Spot above two On-Demand workers, over four instance types of the c6i.large size: the largest
# lever on the bill (docs/scaling.md, "Spot"); each Spot worker drains on its interruption notice.
spot = {
  on_demand_base = 2
  instance_types = ["c6i.large", "c6a.large", "c5.large", "c5a.large"]
}
# Two more workers before the evening peak (the day curve's 20:00), UTC.
scheduled_capacity = [
  { name = "evening", start = "30 16 * * *", end = "0 21 * * *", min_size = 4 },
]

# wss:// with an ACM certificate for your host name (create a Route 53 alias to alb_dns_name).
certificate_arn         = "arn:aws:acm:eu-central-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
alb_idle_timeout_secs   = 120
ping_interval_secs      = 30
drain_seconds           = 30
alb_deletion_protection = true
# AWS WAF on the ALB: Amazon's IP reputation list, known bad inputs, and at most 3,000 new
# connections per address in five minutes (docs/deploy.md, "Alarms and dashboard").
waf_rate_limit = 3000

# Clients present JWTs from a Cloud Foundry UAA (as in the paper), checked against its keys.
auth = {
  jwks_url = "https://uaa.example.com/token_keys"
  issuer   = "https://uaa.example.com/oauth/token"
  audience = "elastic-ws"
}

# The chat route asks the team's backend before a client connects, joins or publishes, and tells it
# who left; the bot route's messages and rpcs go to a Lambda function (docs/hooks.md). The https
# backend verifies each call with the hook secret this deployment keeps in SSM
# (output hook_secret_parameter); the workers may invoke that function and no other.
routes = "/ws=ingest,/chat=ingest+presence,/bot=backend"
hooks = {
  backends = {
    app = { url = "https://app.example.com/ews/hooks", timeout_ms = 2000 }
    bot = { lambda_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:ews-hooks" }
  }
  routes = {
    "/chat" = { backend = "app", hooks = ["connect", "subscribe", "publish", "disconnect"] }
    "/bot"  = { backend = "bot", hooks = ["connect", "message", "rpc"] }
  }
}

# Events go to an SQS queue (with a dead-letter queue) this deployment creates; consumers read the
# `events_queue_url` output with any AWS SDK.
sink = "sqs"
# Page when the oldest waiting event is 10 minutes old (the events-oldest-event alarm).
sqs = {
  retention_seconds     = 345600
  max_receive_count     = 5
  max_age_alarm_seconds = 600
}

# Beside the events, the queue carries every session's start and end and every lost worker, so
# the team's consumer keeps an exact table of who is online (docs/lifecycle.md).
lifecycle_events     = true
node_lost_after_secs = 30

# The chat rooms keep their last 200 messages for 5 minutes, and so do the pushes to each client:
# a client moved by a drain, a rebalance or a crash gets what it missed (docs/history.md), from an
# ElastiCache Valkey replication group this deployment creates (history_engine = "valkey").
history_topics   = ["room.*"]
history_clients  = true
history_size     = 200
history_ttl_secs = 300

# Scale on the connected-client count the active leader publishes (counts each WebSocket once;
# the ALB's ActiveConnectionCount also counts the ALB-to-worker side).
scaling_metric                = "cluster"
cloudwatch_namespace          = "ElasticWS"
cloudwatch_metric             = "ConnectedClients"
cloudwatch_interval_secs      = 60
scale_up_evaluation_periods   = 1
scale_down_evaluation_periods = 3

log_retention_days = 30

tags = {
  Owner = "platform-team"
}
