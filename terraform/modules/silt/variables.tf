# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------

variable "cluster_name" {
  description = "Name of the silt cluster: passed to every agent and Lambda function as --cluster / SILT_CLUSTER and used to name AWS resources (silt-<cluster_name>-...). Lower-case letters, digits and '-', at most 20 characters, no '/'."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$", var.cluster_name)) && !can(regex("/", var.cluster_name))
    error_message = "The cluster_name must be 1-20 characters of lower-case letters, digits and '-', start and end with a letter or digit, and contain no '/'."
  }
}

variable "tags" {
  description = "Tags added to every resource the module creates."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_id" {
  description = "ID of an existing VPC to deploy into. Leave null to create a new VPC over three availability zones (vpc_cidr)."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must be null or look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the existing VPC (vpc_id), one per availability zone: required with vpc_id, at least three in three different zones (checked at plan); the first three carry the etcd members. Ignored when the module creates the VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.subnet_ids) == 0 || length(var.subnet_ids) >= 3
    error_message = "Give at least three subnets (in three availability zones), or none to create a VPC."
  }

  validation {
    condition     = alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Each subnet ID must look like subnet-0123456789abcdef0."
  }
}

variable "private_route_table_ids" {
  description = "Route tables of the existing VPC's private subnets, to which the S3 gateway endpoint is attached: required (non-empty) when create_s3_gateway_endpoint is true. Ignored when the module creates the VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.private_route_table_ids : can(regex("^rtb-[0-9a-f]+$", r))])
    error_message = "Each route table ID must look like rtb-0123456789abcdef0."
  }
}

variable "create_s3_gateway_endpoint" {
  description = "Create an S3 gateway endpoint on the private route tables so that agent, etcd and Lambda traffic to the bucket does not cross a NAT gateway. Set false only when the existing VPC already has one on those route tables."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC the module creates (when vpc_id is null); split into three private subnets and, with a NAT gateway, three public ones."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "The vpc_cidr must be an IPv4 CIDR block of size /20 or larger."
  }
}

variable "availability_zones" {
  description = "Three availability zones for the VPC the module creates. Leave empty to use the region's first three zones. Ignored with an existing VPC (the subnets decide)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 3
    error_message = "Give exactly three availability zones, or none."
  }
}

variable "enable_nat_gateway" {
  description = "With a VPC the module creates: add public subnets, an internet gateway and one NAT gateway so that instances can download the silt and etcd artifacts from https URLs and reach CloudWatch Logs. Without it, host the artifacts in S3 (s3:// URLs) and add interface endpoints for CloudWatch Logs yourself."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the Kafka port (9092, on the load balancer and on every agent, since clients connect to the agents' advertised private addresses after bootstrap) and the HTTP API port (8082) when enabled. Typically the VPC's or the clients' networks."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/[0-9]+$", c))])
    error_message = "Each entry of allowed_cidrs must be an IPv4 CIDR block such as 10.0.0.0/16 (the security group rules take IPv4 only), and the list must not be empty."
  }
}

# ---------------------------------------------------------------------------
# Bucket
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket the module creates for silt's segments, checkpoints and the etcd snapshots."
  type        = string

  validation {
    condition = (
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) &&
      !can(regex("\\.\\.", var.bucket_name)) &&
      !can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+$", var.bucket_name)) &&
      !can(regex("^xn--", var.bucket_name)) &&
      !can(regex("-s3alias$", var.bucket_name))
    )
    error_message = "The bucket_name must follow S3 naming rules: 3-63 characters of lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, no '..', not an IP address, no 'xn--' prefix or '-s3alias' suffix."
  }
}

variable "bucket_prefix" {
  description = "Key prefix of silt's objects in the bucket (the agents get --bucket s3://<bucket_name>/<bucket_prefix>). Must be non-empty, differ from etcd_snapshot_prefix and neither be a prefix of it nor start with it, so that silt's object GC never sees the etcd snapshots and the snapshot expiry never reaches silt's objects."
  type        = string
  default     = "silt"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.bucket_prefix))
    error_message = "The bucket_prefix must be non-empty, without leading or trailing '/', of safe S3 key characters."
  }
}

variable "bucket_force_destroy" {
  description = "Allow terraform destroy to delete the bucket while it still holds objects (all of silt's data). Takes effect only once applied: set it, terraform apply, then terraform destroy. Keep false in production."
  type        = bool
  default     = false
}

variable "s3_kms_key_arn" {
  description = "ARN of a KMS key for the bucket's default encryption (SSE-KMS with a bucket key). Null uses SSE-S3 (AES256). The agents, Lambda functions and etcd members are granted use of the key."
  type        = string
  default     = null

  validation {
    condition     = var.s3_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.s3_kms_key_arn))
    error_message = "The s3_kms_key_arn must be null or a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

# ---------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------

variable "silt_artifact_url" {
  description = "Where the agents download silt from: an s3:// or https:// URL of the silt binary (Linux, matching the architecture) or of a .tar.gz holding it. A new URL rolls the agents (instance refresh). For an s3:// URL the artifact bucket's policy must grant the agent role (output agent_role_arn) s3:GetObject: the role itself holds S3 rights on silt's bucket only."
  type        = string

  validation {
    condition     = can(regex("^(s3|https)://[^[:space:]]+$", var.silt_artifact_url))
    error_message = "The silt_artifact_url must be an s3:// or https:// URL without spaces."
  }
}

variable "architecture" {
  description = "CPU architecture of the agent and etcd instances (arm64 for Graviton types such as c7g/m7g, x86_64 otherwise). Selects the Amazon Linux 2023 image and the etcd release; the silt artifact must match it."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "The architecture must be arm64 or x86_64."
  }
}

variable "agent_instance_type" {
  description = "EC2 instance type of the agents. One 2-vCPU agent produces about 225 MB/s (docs/benchmarks.md); c7g.large is 2 vCPUs and 4 GiB."
  type        = string
  default     = "c7g.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.agent_instance_type))
    error_message = "The agent_instance_type must be an EC2 instance type such as c7g.large."
  }
}

variable "agent_min_size" {
  description = "Minimum number of agents in the autoscaling group (at most agent_desired_capacity)."
  type        = number
  default     = 3

  validation {
    condition     = var.agent_min_size >= 1 && floor(var.agent_min_size) == var.agent_min_size
    error_message = "The agent_min_size must be a whole number of at least 1."
  }
}

variable "agent_max_size" {
  description = "Maximum number of agents in the autoscaling group (must be at least agent_desired_capacity; an instance refresh may add none above it)."
  type        = number
  default     = 6

  validation {
    condition     = var.agent_max_size >= 1 && var.agent_max_size <= 100 && floor(var.agent_max_size) == var.agent_max_size
    error_message = "The agent_max_size must be a whole number from 1 to 100."
  }
}

variable "agent_desired_capacity" {
  description = "Number of agents to run (between agent_min_size and agent_max_size). Three spreads one agent per availability zone."
  type        = number
  default     = 3

  validation {
    condition     = var.agent_desired_capacity >= 1 && floor(var.agent_desired_capacity) == var.agent_desired_capacity
    error_message = "The agent_desired_capacity must be a whole number of at least 1."
  }
}

variable "agent_ami_id" {
  description = "AMI of the agents. Null uses the latest Amazon Linux 2023 image for the architecture at each plan, so an apply after a new Amazon Linux release makes a new launch template version and rolls the agents (one at a time, health-checked). Pin an AMI ID to choose when the agents move to a new image."
  type        = string
  default     = null

  validation {
    condition     = var.agent_ami_id == null || can(regex("^ami-[0-9a-f]+$", var.agent_ami_id))
    error_message = "The agent_ami_id must be null or look like ami-0123456789abcdef0."
  }
}

variable "agent_root_volume_size" {
  description = "Size in GiB of each agent's encrypted root volume, which also holds the block cache (cache_disk, 2 GiB by default) under /var/lib/silt."
  type        = number
  default     = 30

  validation {
    condition     = var.agent_root_volume_size >= 8 && var.agent_root_volume_size <= 16384
    error_message = "The agent_root_volume_size must be between 8 and 16384 GiB."
  }
}

variable "ebs_kms_key_arn" {
  description = "ARN of a KMS key for the agents' and etcd members' EBS volumes. Null uses the account's default EBS encryption key (volumes are always encrypted). The key policy must allow the EC2 Auto Scaling service-linked role (AWSServiceRoleForAutoScaling) to use the key (kms:CreateGrant, Encrypt, Decrypt, ReEncrypt*, GenerateDataKey*, DescribeKey), or agents fail to launch. Changing it later replaces the etcd data volumes, which the module refuses (README, \"Upgrade\")."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.ebs_kms_key_arn))
    error_message = "The ebs_kms_key_arn must be null or a KMS key ARN."
  }
}

variable "kafka_port" {
  description = "Kafka listener port of the agents and the load balancer."
  type        = number
  default     = 9092

  validation {
    condition     = var.kafka_port >= 1024 && var.kafka_port <= 65535
    error_message = "The kafka_port must be between 1024 and 65535."
  }
}

variable "http_port" {
  description = "Port of the agents' /health and /metrics endpoint (--http); the load balancer's health checks use it. Reachable only from the load balancer."
  type        = number
  default     = 9644

  validation {
    condition     = var.http_port >= 1024 && var.http_port <= 65535 && var.http_port != 8082
    error_message = "The http_port must be between 1024 and 65535 and not 8082 (the HTTP API port)."
  }
}

variable "enable_http_api" {
  description = "Turn on silt's HTTP API on the agents (--rest 0.0.0.0:8082) and add a load balancer listener on 8082 reachable from allowed_cidrs."
  type        = bool
  default     = false
}

variable "nlb_internal" {
  description = "Make the network load balancer internal (reachable only inside the VPC and connected networks). An internet-facing one (false) needs public nlb_subnet_ids (checked at plan), and clients must still reach the agents' private addresses."
  type        = bool
  default     = true
}

variable "nlb_subnet_ids" {
  description = "Subnets of the network load balancer. Empty uses the private subnets (right for an internal load balancer)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.nlb_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Each subnet ID must look like subnet-0123456789abcdef0."
  }
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore to the agent and etcd instance roles so that operators can open Session Manager shells (used by the etcd member replacement procedure). Off by default: the roles then hold only what silt and etcd need."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention in days of the CloudWatch log groups (agents, etcd, Lambda functions)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "logs_kms_key_arn" {
  description = "ARN of a KMS key encrypting the CloudWatch log groups. Null uses CloudWatch Logs' own encryption. The key policy must allow the logs service principal of the region."
  type        = string
  default     = null

  validation {
    condition     = var.logs_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.logs_kms_key_arn))
    error_message = "The logs_kms_key_arn must be null or a KMS key ARN."
  }
}

# ---------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------

variable "etcd_instance_type" {
  description = "EC2 instance type of the three etcd members (non-burstable types keep commit latency steady)."
  type        = string
  default     = "m7g.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.etcd_instance_type))
    error_message = "The etcd_instance_type must be an EC2 instance type such as m7g.large."
  }
}

variable "etcd_volume_size" {
  description = "Size in GiB of each etcd member's persistent data volume (gp3, encrypted). Must comfortably exceed etcd_quota_backend_bytes."
  type        = number
  default     = 20

  validation {
    condition     = var.etcd_volume_size >= 10 && var.etcd_volume_size <= 16384
    error_message = "The etcd_volume_size must be between 10 and 16384 GiB."
  }
}

variable "etcd_version" {
  description = "etcd release installed on the members (used to build the default etcd_release_url)."
  type        = string
  default     = "3.5.17"

  validation {
    condition     = can(regex("^3\\.[0-9]+\\.[0-9]+$", var.etcd_version))
    error_message = "The etcd_version must be a 3.x.y release number such as 3.5.17."
  }
}

variable "etcd_release_url" {
  description = "s3:// or https:// URL of the etcd release tarball (etcd-vX.Y.Z-linux-ARCH.tar.gz). Empty uses the pinned GitHub release of etcd_version for the architecture. For an s3:// URL the bucket's policy must grant the etcd role (output etcd_role_arn) s3:GetObject."
  type        = string
  default     = ""

  validation {
    condition     = var.etcd_release_url == "" || can(regex("^(s3|https)://[^[:space:]]+\\.tar\\.gz$", var.etcd_release_url))
    error_message = "The etcd_release_url must be empty or an s3:// or https:// URL of a .tar.gz."
  }
}

variable "etcd_release_sha256" {
  description = "SHA-256 of the etcd release tarball; when set, the members refuse a download that does not match."
  type        = string
  default     = ""

  validation {
    condition     = var.etcd_release_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.etcd_release_sha256))
    error_message = "The etcd_release_sha256 must be empty or 64 lower-case hex digits."
  }
}

variable "etcd_dns_zone" {
  description = "Name of the Route 53 private hosted zone holding one record per etcd member (etcd-1.<zone>, ...). Empty uses <cluster_name>.silt.internal."
  type        = string
  default     = ""

  validation {
    condition     = var.etcd_dns_zone == "" || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z0-9]+$", var.etcd_dns_zone))
    error_message = "The etcd_dns_zone must be empty or a DNS name such as prod.silt.internal."
  }
}

variable "etcd_client_tls" {
  description = "Serve etcd's client port (2379) over TLS with client certificate authentication: the module issues one client certificate (CN silt) from the etcd CA for the agents and the Lambda functions. False serves 2379 as plain HTTP inside the VPC, protected only by the etcd security group. Peer traffic (2380) is always TLS."
  type        = bool
  default     = true
}

variable "etcd_ca_cert_pem" {
  description = "PEM certificate of a CA to sign the etcd member certificates with. Null generates a CA in Terraform (its key is then in the Terraform state: keep the state encrypted and private)."
  type        = string
  default     = null

  validation {
    condition     = var.etcd_ca_cert_pem == null || can(regex("-----BEGIN CERTIFICATE-----", var.etcd_ca_cert_pem))
    error_message = "The etcd_ca_cert_pem must be null or a PEM certificate."
  }
}

variable "etcd_ca_private_key_pem" {
  description = "PEM private key of etcd_ca_cert_pem (required with it, and only with it)."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.etcd_ca_private_key_pem == null || can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.etcd_ca_private_key_pem))
    error_message = "The etcd_ca_private_key_pem must be null or a PEM private key."
  }
}

variable "etcd_initial_cluster_state" {
  description = "etcd --initial-cluster-state written to a member's /etc/etcd/etcd.env at its first boot. It only matters for an empty data volume: \"new\" for the first apply (the three members bootstrap together); \"existing\" to replace a member whose volume was lost, after `etcdctl member add` (README, \"Upgrade\"). Members with data ignore it, and changing it does not touch running members."
  type        = string
  default     = "new"

  validation {
    condition     = contains(["new", "existing"], var.etcd_initial_cluster_state)
    error_message = "The etcd_initial_cluster_state must be new or existing."
  }
}

variable "etcd_quota_backend_bytes" {
  description = "etcd --quota-backend-bytes: the size at which etcd raises NOSPACE and refuses writes. silt checkpoints and deletes its log, so the live data stays small; 8 GiB is etcd's recommended maximum."
  type        = number
  default     = 8589934592

  validation {
    condition     = var.etcd_quota_backend_bytes >= 1073741824 && var.etcd_quota_backend_bytes <= 8589934592
    error_message = "The etcd_quota_backend_bytes must be between 1 GiB and 8 GiB."
  }
}

variable "etcd_auto_compaction_retention" {
  description = "etcd --auto-compaction-retention in revisions (--auto-compaction-mode revision). silt compacts its own history after checkpoints, so a modest number of revisions is enough for watches to catch up."
  type        = number
  default     = 10000

  validation {
    condition     = var.etcd_auto_compaction_retention >= 1000 && floor(var.etcd_auto_compaction_retention) == var.etcd_auto_compaction_retention
    error_message = "The etcd_auto_compaction_retention must be a whole number of at least 1000 revisions."
  }
}

variable "etcd_snapshot_prefix" {
  description = "Key prefix in the bucket for the etcd snapshots (<prefix>/<member>/<date>.db). Must differ from bucket_prefix, and neither may be a prefix of the other."
  type        = string
  default     = "etcd-snapshots"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.etcd_snapshot_prefix))
    error_message = "The etcd_snapshot_prefix must be non-empty, without leading or trailing '/', of safe S3 key characters."
  }
}

variable "etcd_snapshot_schedule" {
  description = "systemd OnCalendar expression of the etcd snapshot timer on each member (default every 30 minutes)."
  type        = string
  default     = "*:0/30"

  validation {
    condition     = length(trimspace(var.etcd_snapshot_schedule)) > 0 && !can(regex("\n", var.etcd_snapshot_schedule))
    error_message = "The etcd_snapshot_schedule must be a one-line systemd OnCalendar expression."
  }
}

variable "etcd_snapshot_retention_days" {
  description = "Days after which a lifecycle rule deletes etcd snapshots (only under etcd_snapshot_prefix; silt's own objects never expire)."
  type        = number
  default     = 14

  validation {
    condition     = var.etcd_snapshot_retention_days >= 1
    error_message = "The etcd_snapshot_retention_days must be at least 1."
  }
}

# ---------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------

variable "enable_lambda" {
  description = "Create the silt-http (function URL, IAM auth) and silt-jobs (EventBridge schedule) Lambda functions. Needs silt_http_zip_url and silt_jobs_zip_url."
  type        = bool
  default     = true
}

variable "silt_http_zip_url" {
  description = "s3://bucket/key of the silt-http zip (holding the bootstrap built by `cargo lambda build --release --arm64`), in the same region. Required when enable_lambda is true (checked at plan); use a new key per release so that Terraform updates the function."
  type        = string
  default     = null

  validation {
    condition     = var.silt_http_zip_url == null || can(regex("^s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/.+\\.zip$", var.silt_http_zip_url))
    error_message = "The silt_http_zip_url must be null or s3://bucket/key.zip."
  }
}

variable "silt_jobs_zip_url" {
  description = "s3://bucket/key of the silt-jobs zip (holding the bootstrap built by `cargo lambda build --release --arm64`), in the same region. Required when enable_lambda is true (checked at plan); use a new key per release."
  type        = string
  default     = null

  validation {
    condition     = var.silt_jobs_zip_url == null || can(regex("^s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/.+\\.zip$", var.silt_jobs_zip_url))
    error_message = "The silt_jobs_zip_url must be null or s3://bucket/key.zip."
  }
}

variable "jobs_schedule" {
  description = "EventBridge schedule expression of silt-jobs (retention, compaction, cleaner, table export and object GC passes)."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate\\([0-9]+ (minute|minutes|hour|hours|day|days)\\)|cron\\(.+\\))$", var.jobs_schedule))
    error_message = "The jobs_schedule must be an EventBridge rate(...) or cron(...) expression."
  }
}

variable "jobs_reserved_concurrency" {
  description = "Reserved concurrency of silt-jobs. Null reserves none: the passes take etcd locks, so overlapping runs are safe. 1 keeps runs from overlapping but takes one execution from the account's pool, which AWS refuses when it would leave fewer than 10 unreserved (as in new accounts with a limit of 10)."
  type        = number
  default     = null

  validation {
    condition     = var.jobs_reserved_concurrency == null || try(var.jobs_reserved_concurrency >= 1 && floor(var.jobs_reserved_concurrency) == var.jobs_reserved_concurrency, false)
    error_message = "The jobs_reserved_concurrency must be null or a whole number of at least 1."
  }
}

variable "silt_http_memory_mb" {
  description = "Memory of silt-http in MB (at least 512)."
  type        = number
  default     = 1024

  validation {
    condition     = var.silt_http_memory_mb >= 512 && var.silt_http_memory_mb <= 10240
    error_message = "The silt_http_memory_mb must be between 512 and 10240."
  }
}

variable "silt_jobs_memory_mb" {
  description = "Memory of silt-jobs in MB (compaction holds an object of up to compaction_object_bytes twice)."
  type        = number
  default     = 1024

  validation {
    condition     = var.silt_jobs_memory_mb >= 256 && var.silt_jobs_memory_mb <= 10240
    error_message = "The silt_jobs_memory_mb must be between 256 and 10240."
  }
}

variable "silt_jobs_timeout_seconds" {
  description = "Timeout of silt-jobs in seconds; each job gets a share of it (at most jobs_pass_time)."
  type        = number
  default     = 300

  validation {
    condition     = var.silt_jobs_timeout_seconds >= 30 && var.silt_jobs_timeout_seconds <= 900
    error_message = "The silt_jobs_timeout_seconds must be between 30 and 900."
  }
}

variable "lambda_environment" {
  description = "Extra SILT_* environment variables for both functions (for example SILT_LOG = \"debug\"). The module sets SILT_ETCD, SILT_BUCKET and SILT_CLUSTER itself."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.lambda_environment) : can(regex("^SILT_[A-Z0-9_]+$", k))])
    error_message = "The lambda_environment keys must be SILT_* settings."
  }
}
