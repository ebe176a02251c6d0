variable "name" {
  type        = string
  description = "Name of this deployment; prefixes every resource (and the ALB name, so keep it short)."
  default     = "ews"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of a-z, 0-9 and -, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "AWS region to deploy into."
  default     = "eu-central-1"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every resource."
  default     = {}
}

# --- network ---------------------------------------------------------------------------------

variable "vpc_cidr" {
  type        = string
  description = "IPv4 CIDR of the VPC."
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  type        = list(string)
  description = "Two availability zones; empty = the region's first two."
  default     = []
  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones must be empty or list exactly two zones."
  }
}

variable "nat_gateway_per_az" {
  type        = bool
  description = "One NAT gateway per zone (zone-outage tolerant) instead of one shared (cheaper)."
  default     = true
}

variable "admin_cidrs" {
  type        = list(string)
  description = "Source ranges allowed to reach the admin ports (9090) of workers and leaders; empty = the VPC only."
  default     = []
}

variable "client_cidrs" {
  type        = list(string)
  description = "Source ranges allowed to reach the ALB (WebSocket clients)."
  default     = ["0.0.0.0/0"]
}

variable "kafka_egress" {
  type = object({
    cidrs = list(string)
    port  = number
  })
  description = "Where workers may reach Kafka brokers when sink = \"kafka\"; null = no Kafka egress."
  default     = null
}

# --- nodes -----------------------------------------------------------------------------------

variable "leader_ami_id" {
  type        = string
  description = "AMI built by packer/leader.pkr.hcl."
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.leader_ami_id))
    error_message = "leader_ami_id must look like ami-0123456789abcdef0."
  }
}

variable "worker_ami_id" {
  type        = string
  description = "AMI built by packer/worker.pkr.hcl."
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.worker_ami_id))
    error_message = "worker_ami_id must look like ami-0123456789abcdef0."
  }
}

variable "leader_instance_type" {
  type        = string
  description = "Instance type of the two leaders (x86_64)."
  default     = "t3.medium"
}

variable "worker_instance_type" {
  type        = string
  description = "Instance type of the workers (x86_64)."
  default     = "c6i.large"
}

variable "root_volume_size_gb" {
  type        = number
  description = "Root volume of every node (the leaders' built-in queue lives on it)."
  default     = 20
  validation {
    condition     = var.root_volume_size_gb >= 8
    error_message = "root_volume_size_gb must be at least 8."
  }
}

variable "worker_min_size" {
  type        = number
  description = "Minimum and initial number of workers (the paper: 2)."
  default     = 2
  validation {
    condition     = var.worker_min_size >= 1
    error_message = "worker_min_size must be at least 1."
  }
}

variable "worker_max_size" {
  type        = number
  description = "Maximum number of workers (the paper: 10)."
  default     = 10
  validation {
    condition     = var.worker_max_size >= 1 && var.worker_max_size <= 100
    error_message = "worker_max_size must be within 1..100."
  }
}

variable "public_port" {
  type        = number
  description = "Worker WebSocket port behind the ALB (EWS_LISTEN)."
  default     = 8080
}

variable "admin_port" {
  type        = number
  description = "Admin HTTP port of workers and leaders (EWS_ADMIN_LISTEN); never exposed through the ALB."
  default     = 9090
}

variable "internal_port" {
  type        = number
  description = "Gossip (UDP) and node-link (TCP) port of every node (EWS_INTERNAL_LISTEN)."
  default     = 7070
}

variable "private_zone_name" {
  type        = string
  description = "Private Route 53 zone for the leaders' names."
  default     = "ews.internal"
}

variable "drain_seconds" {
  type        = number
  description = "Worker drain window after SIGTERM (EWS_DRAIN_SECONDS); also the ALB deregistration delay. At most 300, which the worker unit's TimeoutStopSec (330) covers."
  default     = 30
  validation {
    condition     = var.drain_seconds >= 1 && var.drain_seconds <= 300
    error_message = "drain_seconds must be within 1..300."
  }
}

variable "ping_interval_secs" {
  type        = number
  description = "Worker ping interval (EWS_PING_INTERVAL_SECS); must stay below alb_idle_timeout_secs."
  default     = 30
  validation {
    condition     = var.ping_interval_secs >= 1
    error_message = "ping_interval_secs must be positive."
  }
}

variable "alb_idle_timeout_secs" {
  type        = number
  description = "ALB idle timeout; above the ping interval so idle WebSockets are never cut."
  default     = 120
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for wss:// on 443 (port 80 then redirects); empty = ws:// on port 80 only."
  default     = ""
  validation {
    condition     = var.certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be empty or an ACM certificate ARN."
  }
}

variable "alb_deletion_protection" {
  type        = bool
  description = "Protect the ALB from deletion."
  default     = false
}

variable "alb_access_logs_bucket" {
  type        = string
  description = "An existing S3 bucket for the ALB's access logs (its policy must let the ALB write); empty = a bucket made here (alb_access_logs_retention_days)."
  default     = ""
}

variable "alb_access_logs_retention_days" {
  type        = number
  description = "Without alb_access_logs_bucket: the ALB's access logs go to a bucket made here and expire after this many days; 0 = no access logs."
  default     = 90
  validation {
    condition     = var.alb_access_logs_retention_days >= 0 && floor(var.alb_access_logs_retention_days) == var.alb_access_logs_retention_days
    error_message = "alb_access_logs_retention_days must be a whole number, 0 or more."
  }
}

variable "waf_rate_limit" {
  type        = number
  description = "AWS WAF on the ALB: block an address opening more than this many connections in five minutes (with Amazon's IP reputation list and known bad inputs); 0 = no WAF. Set it from what one address of yours may hold: a reconnect after a drain counts every client behind a NAT."
  default     = 0
  validation {
    condition     = var.waf_rate_limit == 0 || (var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000)
    error_message = "waf_rate_limit must be 0 (no WAF) or between 10 and 2,000,000,000 (AWS WAF's range)."
  }
}

variable "waf_count_only" {
  type        = bool
  description = "The WAF rules count what they would block instead of blocking (watch before enforcing)."
  default     = false
}

variable "enable_ssm_session_manager" {
  type        = bool
  description = "Let operators open shells on nodes through SSM Session Manager (no SSH anywhere)."
  default     = true
}

# --- worker behaviour ------------------------------------------------------------------------

variable "auth" {
  type = object({
    jwks_url                   = optional(string, "")
    issuer                     = optional(string, "")
    audience                   = optional(string, "")
    hs256_secret_ssm_parameter = optional(string, "")
    leeway_secs                = optional(number)
    no_auth                    = optional(bool, false)
  })
  description = "Client JWT validation: a JWKS URL (e.g. UAA /token_keys) or the name of an SSM SecureString holding an HS256 secret; issuer/audience checks. no_auth = true sets --no-auth (trials only)."
  default     = {}
  validation {
    condition     = var.auth.no_auth || var.auth.jwks_url != "" || var.auth.hs256_secret_ssm_parameter != ""
    error_message = "auth needs jwks_url or hs256_secret_ssm_parameter (or, for trials only, no_auth = true)."
  }
  # Unauthenticated clients write into the pipeline: only from ranges the deployer names.
  validation {
    condition     = !var.auth.no_auth || length(setintersection(toset(var.client_cidrs), toset(["0.0.0.0/0", "::/0"]))) == 0
    error_message = "no_auth with client_cidrs open to the internet (0.0.0.0/0) is an open write endpoint: list the ranges that may connect in client_cidrs (your own address: curl https://checkip.amazonaws.com), or authenticate with jwks_url or hs256_secret_ssm_parameter."
  }
}

variable "sink" {
  type        = string
  description = "Where workers put events: \"sqs\" (an SQS queue this module creates, with a dead-letter queue), \"kafka\" (your brokers, e.g. MSK) or \"queue\" (the built-in queue on the active leader: unreplicated, see docs/pipeline.md)."
  default     = "sqs"
  validation {
    condition     = contains(["sqs", "queue", "kafka"], var.sink)
    error_message = "sink must be \"sqs\", \"queue\" or \"kafka\"."
  }
}

variable "history_topics" {
  type        = list(string)
  description = "Topics (names or patterns such as room.*, each optionally with its own limits: room.*=500/3600 keeps 500 messages for an hour) whose messages are kept, so a client moved by a drain, a rebalance or a crash recovers what it missed (EWS_HISTORY_TOPICS; docs/history.md). Empty: no topic history."
  default     = []
  validation {
    condition     = alltrue([for t in var.history_topics : can(regex("^[A-Za-z0-9._:-]+(\\.\\*)?(=[0-9]*(/[0-9]+)?)?$", t))])
    error_message = "history_topics entries are topic names or patterns (room.*), optionally with limits: room.*=500/3600 (size/seconds)."
  }
}

variable "history_clients" {
  type        = bool
  description = "Pushes to client ids keep history too (EWS_HISTORY_CLIENTS)."
  default     = false
}

variable "history_size" {
  type        = number
  description = "Messages kept per topic (EWS_HISTORY_SIZE)."
  default     = 100
  validation {
    condition     = var.history_size >= 1 && var.history_size <= 100000 && floor(var.history_size) == var.history_size
    error_message = "history_size must be a whole number from 1 to 100000."
  }
}

variable "history_ttl_secs" {
  type        = number
  description = "Seconds a message is kept (EWS_HISTORY_TTL_SECS)."
  default     = 300
  validation {
    condition     = var.history_ttl_secs >= 1 && var.history_ttl_secs <= 604800 && floor(var.history_ttl_secs) == var.history_ttl_secs
    error_message = "history_ttl_secs must be a whole number from 1 to 604800."
  }
}

variable "history_engine" {
  type        = string
  description = "Where history lives: \"valkey\" (an ElastiCache Valkey replication group this module creates when any topic or client keeps history) or \"none\" (no history at all)."
  default     = "valkey"
  validation {
    condition     = contains(["valkey", "none"], var.history_engine)
    error_message = "history_engine must be \"valkey\" or \"none\"."
  }
  validation {
    condition     = var.history_engine == "valkey" || (length(var.history_topics) == 0 && !var.history_clients)
    error_message = "history_engine = \"none\" keeps no history: leave history_topics empty and history_clients off."
  }
}

variable "history_node_type" {
  type        = string
  description = "ElastiCache node type of the history engine (two of them: a primary and a replica)."
  default     = "cache.t4g.micro"
}

variable "lifecycle_events" {
  type        = bool
  description = "Write lifecycle records to the sink beside the events (EWS_LIFECYCLE_EVENTS): connected and disconnected for every session (workers), node_lost for every worker that leaves (the active leader), so a consumer can keep an exact table of online clients (docs/lifecycle.md)."
  default     = false
}

variable "node_lost_after_secs" {
  type        = number
  description = "With lifecycle_events: seconds a worker stays unreachable before the active leader writes its node_lost (EWS_NODE_LOST_AFTER_SECS); a worker cut off longer ends its sessions when it is heard again."
  default     = 30
  validation {
    condition     = var.node_lost_after_secs >= 1 && floor(var.node_lost_after_secs) == var.node_lost_after_secs
    error_message = "node_lost_after_secs must be a whole number of seconds, at least 1."
  }
}

variable "sqs" {
  type = object({
    retention_seconds          = optional(number, 345600)
    visibility_timeout_seconds = optional(number, 30)
    max_receive_count          = optional(number, 5)
    max_age_alarm_seconds      = optional(number, 900)
  })
  description = "With sink = \"sqs\": how long the events queue keeps a message (default 4 days), a consumer's visibility timeout, receives before a message moves to the dead-letter queue, and the age of the oldest waiting event that raises the events-oldest-event alarm (default 15 minutes)."
  default     = {}
  validation {
    condition     = var.sqs.retention_seconds >= 60 && var.sqs.retention_seconds <= 1209600 && var.sqs.visibility_timeout_seconds >= 0 && var.sqs.visibility_timeout_seconds <= 43200 && var.sqs.max_receive_count >= 1
    error_message = "sqs: retention 60..1209600 s, visibility timeout 0..43200 s, max_receive_count at least 1."
  }
  validation {
    condition     = var.sqs.max_age_alarm_seconds >= 300 && var.sqs.max_age_alarm_seconds < var.sqs.retention_seconds
    error_message = "sqs.max_age_alarm_seconds must be at least 300 (SQS reports every 5 minutes) and below retention_seconds (or the alarm comes after the events are gone)."
  }
}

variable "queue_name" {
  type        = string
  description = "Built-in queue the workers send events to (EWS_QUEUE_NAME)."
  default     = "events"
}

variable "kafka_brokers" {
  type        = string
  description = "Comma-separated Kafka bootstrap brokers (EWS_KAFKA_BROKERS), when sink = \"kafka\"."
  default     = ""
}

variable "kafka_topic" {
  type        = string
  description = "Kafka topic (EWS_KAFKA_TOPIC)."
  default     = "events"
}

variable "routes" {
  type        = string
  description = "The workers' WebSocket routes (--routes): comma-separated PATH=HANDLER[@PLACEMENT][+presence], e.g. \"/ws=ingest,/chat=ingest,/bot=backend\". Empty: the worker's default."
  default     = ""
  validation {
    condition     = var.routes == "" || can(regex("^/[^,=\\s]*=[a-z0-9_@+-]+(,/[^,=\\s]*=[a-z0-9_@+-]+)*$", var.routes))
    error_message = "routes must be comma-separated PATH=HANDLER[@PLACEMENT][+presence] entries, each path starting with /."
  }
}

variable "hooks" {
  type = object({
    backends = optional(map(object({
      url                 = optional(string)
      lambda_function_arn = optional(string)
      timeout_ms          = optional(number)
      concurrency         = optional(number)
      breaker_failures    = optional(number)
      breaker_open_ms     = optional(number)
    })), {})
    routes = optional(map(object({
      backend = string
      hooks   = list(string)
    })), {})
  })
  description = "Backend hooks (docs/hooks.md): backends, each an https URL (every call signed with the hook secret this module keeps in SSM, output hook_secret_parameter) or a Lambda function ARN (the workers may invoke those functions and no other), and each route's hooks (connect, refresh, subscribe, publish, rpc, message, disconnect). The routes must be in var.routes."
  default     = {}
  validation {
    condition     = alltrue([for b in values(var.hooks.backends) : (b.url == null) != (b.lambda_function_arn == null)])
    error_message = "each hooks backend needs exactly one of url and lambda_function_arn."
  }
  validation {
    condition     = alltrue([for b in values(var.hooks.backends) : b.url == null || can(regex("^https://", b.url))])
    error_message = "a hooks backend url must be https:// (calls carry clients' claims)."
  }
  validation {
    condition     = alltrue([for b in values(var.hooks.backends) : b.lambda_function_arn == null || can(regex("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$", b.lambda_function_arn))])
    error_message = "lambda_function_arn must be a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])."
  }
  validation {
    condition     = alltrue([for r in values(var.hooks.routes) : contains(keys(var.hooks.backends), r.backend)])
    error_message = "every hooks route names one of hooks.backends."
  }
  validation {
    condition     = alltrue([for r in values(var.hooks.routes) : length(r.hooks) > 0 && alltrue([for h in r.hooks : contains(["connect", "refresh", "subscribe", "publish", "rpc", "message", "disconnect"], h)])])
    error_message = "a hooks route lists one or more of connect, refresh, subscribe, publish, rpc, message and disconnect."
  }
  validation {
    condition     = alltrue([for p in keys(var.hooks.routes) : strcontains(var.routes, "${p}=")])
    error_message = "every hooks route must be one of var.routes (PATH=HANDLER)."
  }
}

variable "hook_secret_version" {
  type        = number
  description = "Raise to rotate the hook secret (a new one is written to SSM; workers read it on restart, so roll the backends' copy first)."
  default     = 1
  validation {
    condition     = var.hook_secret_version >= 1 && floor(var.hook_secret_version) == var.hook_secret_version
    error_message = "hook_secret_version must be a positive whole number."
  }
}

variable "worker_extra_env" {
  type        = map(string)
  description = "Further EWS_* settings for the workers' /etc/ews/ews.env."
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.worker_extra_env) : can(regex("^EWS_[A-Z0-9_]+$", k))])
    error_message = "worker_extra_env keys must be EWS_* variable names."
  }
}

variable "leader_extra_env" {
  type        = map(string)
  description = "Further EWS_* settings for the leaders' /etc/ews/ews.env."
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.leader_extra_env) : can(regex("^EWS_[A-Z0-9_]+$", k))])
    error_message = "leader_extra_env keys must be EWS_* variable names."
  }
}

# --- scaling ---------------------------------------------------------------------------------

variable "scaling_mode" {
  type        = string
  description = "\"lambda\" (default, the paper's design): two alarms and two scaler Lambdas step the workers one at a time; \"target-tracking\": an EC2 Auto Scaling target-tracking policy holds connected clients per worker at target_clients_per_worker (no Lambdas to build)."
  default     = "lambda"
  validation {
    condition     = contains(["lambda", "target-tracking"], var.scaling_mode)
    error_message = "scaling_mode must be \"lambda\" or \"target-tracking\"."
  }
}

variable "target_clients_per_worker" {
  type        = number
  description = "With scaling_mode = \"target-tracking\": connected clients per in-service worker the policy aims at (the step's 80 % of worker_max_clients by default)."
  default     = 80000
}

variable "target_tracking_disable_scale_in" {
  type        = bool
  description = "With scaling_mode = \"target-tracking\": never scale in, so no client is moved by a scale-in (shrink the group by hand or on a schedule)."
  default     = false
}

variable "scaling_metric" {
  type        = string
  description = "\"cluster\" (default): alarms on the connected-client count the active leader publishes, beside the busiest and quietest worker's and each worker's (the busy-worker alarm and the least-loaded termination policy need them); a missing datapoint is missing, never zero. \"alb\": on the ALB's ActiveConnectionCount (Sum, 60 s), as in the paper, with a quiet minute read as zero; no busy-worker alarm."
  default     = "cluster"
  validation {
    condition     = contains(["alb", "cluster"], var.scaling_metric)
    error_message = "scaling_metric must be \"alb\" or \"cluster\"."
  }
}

variable "publish_cluster_metric" {
  type        = bool
  description = "Whether the active leader publishes the cluster metric (always on when scaling_metric = \"cluster\")."
  default     = false
}

variable "cloudwatch_namespace" {
  type        = string
  description = "Namespace of the cluster metric (EWS_CLOUDWATCH_NAMESPACE)."
  default     = "ElasticWS"
}

variable "cloudwatch_metric" {
  type        = string
  description = "Name of the cluster metric (EWS_CLOUDWATCH_METRIC)."
  default     = "ConnectedClients"
}

variable "cloudwatch_interval_secs" {
  type        = number
  description = "How often the active leader publishes the cluster metric (EWS_CLOUDWATCH_INTERVAL_SECS)."
  default     = 60
}

variable "step" {
  type        = number
  description = "Clients per worker (STEP): with threshold_formula \"per-worker\", scale out above workers x step, in below (workers - 1) x (step - hysteresis). 80 % of worker_max_clients by default, so a fifth of each worker is left for the minutes a new one takes to boot and fill."
  default     = 80000
}

variable "hysteresis" {
  type        = number
  description = "Clients per worker below the step before scaling in (HYSTERESIS): the gap between stepping out and back in grows with the fleet."
  default     = 8000
}

variable "threshold_formula" {
  type        = string
  description = "How the scalers' thresholds follow from the worker count (THRESHOLDS): \"per-worker\" (every worker is worth a step) or \"paper\" (the first worker_min_size workers are worth one step together: up = (n - min + 1) x step, down = (n - min) x step - hysteresis)."
  default     = "per-worker"
  validation {
    condition     = contains(["per-worker", "paper"], var.threshold_formula)
    error_message = "threshold_formula must be \"per-worker\" or \"paper\"."
  }
}

variable "worker_max_clients" {
  type        = number
  description = "Clients one worker takes (EWS_MAX_CONNECTIONS); past it a worker refuses upgrades with 503 and Retry-After, and the busy-worker alarm's line is busy_fraction of it. The paper's 100,000 per node; the AMI's open-file limit (1,000,000) leaves room."
  default     = 100000
  validation {
    condition     = var.worker_max_clients >= 1 && var.worker_max_clients <= 900000
    error_message = "worker_max_clients must be within 1..900000 (the AMI's open-file limit is 1,000,000)."
  }
}

variable "busy_fraction" {
  type        = number
  description = "Scale out when the busiest worker holds more than this fraction of worker_max_clients while the quietest is not still filling (the busy-worker alarm, 2 of 2 minutes); a worker above it also rebalances from half the margin on (EWS_BUSY_FRACTION)."
  default     = 0.9
  validation {
    condition     = var.busy_fraction > 0 && var.busy_fraction <= 1
    error_message = "busy_fraction must be within (0, 1]."
  }
}

variable "scale_in_cooldown_secs" {
  type        = number
  description = "No scale-in within this long of the last scale-in or scale-out (SCALE_IN_COOLDOWN_SECS): a drop, or a gap read as one, costs one worker at most per cool-down."
  default     = 300
}

variable "fill_secs" {
  type        = number
  description = "No busy-worker scale-out within this long of the group's last launch (FILL_SECS): boot, a metric delay and the fill of the worker added last."
  default     = 300
}

variable "least_loaded_termination" {
  type        = bool
  description = "Scale-in removes the worker holding the fewest clients: the termination-policy Lambda ews-terminate, listed before NewestInstance. Needs the leaders' per-worker metric (scaling_metric = \"cluster\" or publish_cluster_metric)."
  default     = true
}

variable "scheduled_capacity" {
  type = list(object({
    name     = string
    start    = string
    end      = string
    min_size = number
  }))
  description = "Workers kept before a known peak: from the cron expression start to end (UTC unless scheduled_capacity_time_zone) the group's minimum is min_size, then worker_min_size again. Example: [{ name = \"evening\", start = \"30 16 * * *\", end = \"0 21 * * *\", min_size = 6 }]."
  default     = []
  validation {
    condition     = alltrue([for s in var.scheduled_capacity : s.min_size >= 1 && can(regex("^[A-Za-z0-9-]{1,40}$", s.name))])
    error_message = "scheduled_capacity: each entry needs min_size >= 1 and a name of letters, digits and dashes."
  }
}

variable "scheduled_capacity_time_zone" {
  type        = string
  description = "IANA time zone of scheduled_capacity's cron expressions (e.g. Europe/Berlin)."
  default     = "Etc/UTC"
}

variable "spot" {
  type = object({
    on_demand_base = number
    instance_types = list(string)
  })
  description = "Spot workers: null (default) for On-Demand only; else on_demand_base On-Demand workers and Spot above them, price-capacity-optimized over instance_types (several, of one size), with Capacity Rebalancing, and each worker draining on its two-minute interruption notice (EWS_IMDS_URL). drain_seconds must then leave time in the notice (at most 90)."
  default     = null
  validation {
    condition     = var.spot == null ? true : (var.spot.on_demand_base >= 0 && length(var.spot.instance_types) >= 1)
    error_message = "spot: on_demand_base must be >= 0 and instance_types must name at least one type."
  }
}

variable "scaler_bounds_override" {
  type = object({
    min_size = number
    max_size = number
  })
  description = "MIN_SIZE/MAX_SIZE for the scalers; null = the group's own min/max."
  default     = null
}

variable "scale_up_evaluation_periods" {
  type        = number
  description = "Minutes above the threshold before a scale-up."
  default     = 1
}

variable "scale_down_evaluation_periods" {
  type        = number
  description = "Minutes below the threshold before a scale-down."
  default     = 3
}

variable "lambda_zip_dir" {
  type        = string
  description = "Directory of the Lambda zips (<bin>/bootstrap.zip); empty = ../target/lambda relative to this module."
  default     = ""
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the scalers' logs and the VPC flow logs."
  default     = 30
}

variable "leader_data_volume_size_gb" {
  type        = number
  description = "With sink = \"queue\": size of each leader's EBS volume for the built-in queue, which outlives leader replacement."
  default     = 20
  validation {
    condition     = var.leader_data_volume_size_gb >= 1
    error_message = "leader_data_volume_size_gb must be at least 1."
  }
}

variable "leader_detailed_monitoring" {
  type        = bool
  description = "EC2 detailed (1-minute) monitoring of the two leaders."
  default     = true
}

variable "worker_instance_warmup_secs" {
  type        = number
  description = "Seconds a new worker needs to boot, join the cluster and pass the health check (the group's default instance warmup)."
  default     = 120
}

variable "scaler_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of each scaler Lambda; null (default) = unreserved. Accounts with a low concurrency quota (new accounts) cannot reserve any."
  default     = null
}

variable "alarm_topic_arns" {
  type        = list(string)
  description = "SNS topics notified by the operational alarms (unhealthy workers, scaler errors); empty = the alarms only show in the console."
  default     = []
}

variable "admin_token_version" {
  type        = number
  description = "Generation of the admin token: raise it to write a new random token to SSM (nodes read it when they restart)."
  default     = 1
  validation {
    condition     = var.admin_token_version >= 1 && floor(var.admin_token_version) == var.admin_token_version
    error_message = "admin_token_version must be a positive whole number."
  }
}

variable "cluster_secret_version" {
  type        = number
  description = "Generation of the cluster secret's first slot (/<name>/cluster-secret): raise it to write a new random secret there (nodes read it at boot; rotate without downtime as docs/deploy.md says)."
  default     = 1
  validation {
    condition     = var.cluster_secret_version >= 1 && floor(var.cluster_secret_version) == var.cluster_secret_version
    error_message = "cluster_secret_version must be a positive whole number."
  }
}

variable "cluster_secret_2_version" {
  type        = number
  description = "Generation of the cluster secret's second slot (/<name>/cluster-secret-2): raise it to write a new random secret there, the first step of a rotation without downtime (docs/deploy.md); 0 = no second slot."
  default     = 0
  validation {
    condition     = var.cluster_secret_2_version >= 0 && floor(var.cluster_secret_2_version) == var.cluster_secret_2_version
    error_message = "cluster_secret_2_version must be a whole number, 0 or more."
  }
}

variable "cluster_secret_signing" {
  type        = number
  description = "Which cluster-secret slot the nodes sign with: 1 (/<name>/cluster-secret) or 2 (/<name>/cluster-secret-2)."
  default     = 1
  validation {
    condition     = contains([1, 2], var.cluster_secret_signing)
    error_message = "cluster_secret_signing must be 1 or 2."
  }
  validation {
    condition     = var.cluster_secret_signing == 1 || var.cluster_secret_2_version > 0
    error_message = "cluster_secret_signing = 2 needs the second slot: set cluster_secret_2_version (docs/deploy.md, \"Rotating the cluster secret\")."
  }
}

variable "cluster_secret_accept_both" {
  type        = bool
  description = "Nodes also accept the slot they do not sign with: on for the two middle steps of a rotation (docs/deploy.md), off otherwise."
  default     = false
  validation {
    condition     = !var.cluster_secret_accept_both || var.cluster_secret_2_version > 0
    error_message = "cluster_secret_accept_both needs the second slot: set cluster_secret_2_version (docs/deploy.md, \"Rotating the cluster secret\")."
  }
}

variable "worker_refresh_max_healthy_percentage" {
  type        = number
  description = "Rolling a new worker AMI or new settings: the most of the group in service at once, in percent (110: one worker at a time up to ten workers). docs/deploy.md, \"Rolling deploys\"."
  default     = 110
  validation {
    condition     = var.worker_refresh_max_healthy_percentage > 100 && var.worker_refresh_max_healthy_percentage <= 200
    error_message = "worker_refresh_max_healthy_percentage must be above 100 (launch before terminate) and at most 200."
  }
}

variable "worker_refresh_checkpoint_delay_secs" {
  type        = number
  description = "Rolling deploys pause this long after 20 % and 50 % of the workers are replaced, for the rollback alarms to judge the new ones."
  default     = 300
  validation {
    condition     = var.worker_refresh_checkpoint_delay_secs >= 0 && var.worker_refresh_checkpoint_delay_secs <= 172800
    error_message = "worker_refresh_checkpoint_delay_secs must be between 0 and 172800 (the API's range)."
  }
}

variable "flow_logs_traffic_type" {
  type        = string
  description = "What the VPC flow logs record: REJECT (refused connections, the default) or ALL (every flow, every WebSocket: far more log volume)."
  default     = "REJECT"
  validation {
    condition     = contains(["REJECT", "ALL", "ACCEPT"], var.flow_logs_traffic_type)
    error_message = "flow_logs_traffic_type must be REJECT, ACCEPT or ALL."
  }
}

variable "interface_endpoints" {
  type        = list(string)
  description = "AWS services the nodes reach through interface endpoints instead of the NAT gateways: any of sqs, logs, ssm, monitoring, autoscaling, secretsmanager. Each bills per zone-hour (docs/deploy.md, \"What it costs\"); the DynamoDB and S3 gateway endpoints are always there (free)."
  default     = []
  validation {
    condition     = alltrue([for e in var.interface_endpoints : contains(["sqs", "logs", "ssm", "monitoring", "autoscaling", "secretsmanager"], e)])
    error_message = "interface_endpoints may name sqs, logs, ssm, monitoring, autoscaling and secretsmanager."
  }
}

variable "queue_backup_retention_days" {
  type        = number
  description = "With sink = \"queue\": AWS Backup snapshots the leaders' data volumes on queue_backup_schedule and keeps each snapshot this many days; 0 = no backups."
  default     = 14
  validation {
    condition     = var.queue_backup_retention_days >= 0 && floor(var.queue_backup_retention_days) == var.queue_backup_retention_days
    error_message = "queue_backup_retention_days must be a whole number, 0 or more."
  }
}

variable "queue_backup_schedule" {
  type        = string
  description = "When the queue volumes are backed up (an AWS Backup cron expression, UTC)."
  default     = "cron(0 3 * * ? *)"
  validation {
    condition     = can(regex("^cron\\(.+\\)$", var.queue_backup_schedule))
    error_message = "queue_backup_schedule must be a cron(...) expression."
  }
}

variable "queue_backup_force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the backup vault with its recovery points (trials); false keeps them and stops the destroy at the vault."
  default     = false
}
