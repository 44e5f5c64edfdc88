variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------

variable "cluster_name" {
  description = "Name of the silt cluster (lower-case letters, digits, '-'; at most 20 characters)."
  type        = string
  default     = "prod"
}

variable "tags" {
  description = "Tags added to every resource."
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
}

variable "subnet_ids" {
  description = "Private subnets of the existing VPC (vpc_id), one per availability zone: required with vpc_id, at least three in three different zones (checked at plan); the first three carry the etcd members. Ignored when the module creates the VPC."
  type        = list(string)
  default     = []
}

variable "private_route_table_ids" {
  description = "Route tables of the existing VPC's private subnets, to which the S3 gateway endpoint is attached: required (non-empty) when create_s3_gateway_endpoint is true. Ignored when the module creates the VPC."
  type        = list(string)
  default     = []
}

variable "create_s3_gateway_endpoint" {
  description = "Create an S3 gateway endpoint on the private route tables so that agent, etcd and Lambda traffic to the bucket does not cross a NAT gateway. Set false only when the existing VPC already has one on those route tables."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR block of the new VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Three availability zones for the VPC the module creates. Leave empty to use the region's first three zones. Ignored with an existing VPC (the subnets decide)."
  type        = list(string)
  default     = []
}

variable "enable_nat_gateway" {
  description = "With a VPC the module creates: add public subnets, an internet gateway and one NAT gateway so that instances can download the silt and etcd artifacts from https URLs and reach CloudWatch Logs. Without it, host the artifacts in S3 (s3:// URLs) and add interface endpoints for CloudWatch Logs yourself."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach Kafka (9092, on the load balancer and the agents) and the HTTP API (8082). The default is the new VPC's own range: change it with an existing VPC, or to your own address (x.y.z.w/32) with nlb_internal = false. Kafka is plaintext without authentication: keep it tight."
  type        = list(string)
  default     = ["10.40.0.0/16"]
}

# ---------------------------------------------------------------------------
# Bucket
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Globally unique name of the S3 bucket the module creates."
  type        = string
}

variable "bucket_prefix" {
  description = "Key prefix of silt's objects in the bucket (the agents get --bucket s3://<bucket_name>/<bucket_prefix>). Must be non-empty, differ from etcd_snapshot_prefix and neither be a prefix of it nor start with it, so that silt's object GC never sees the etcd snapshots and the snapshot expiry never reaches silt's objects."
  type        = string
  default     = "silt"
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
}

# ---------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------

variable "silt_artifact_url" {
  description = "s3:// or https:// URL of the silt binary for Linux on the instances' architecture (arm64 by default): either the bare binary or a .tar.gz holding a file named `silt`. For s3://, the artifact bucket's policy must grant the agent role s3:GetObject (README, \"Apply\")."
  type        = string
}

variable "architecture" {
  description = "CPU architecture of the agent and etcd instances (arm64 for Graviton types such as c7g/m7g, x86_64 otherwise). Selects the Amazon Linux 2023 image and the etcd release; the silt artifact must match it."
  type        = string
  default     = "arm64"
}

variable "agent_instance_type" {
  description = "EC2 instance type of the agents. One 2-vCPU agent produces about 225 MB/s (docs/benchmarks.md); c7g.large is 2 vCPUs and 4 GiB."
  type        = string
  default     = "c7g.large"
}

variable "agent_min_size" {
  description = "Minimum number of agents in the autoscaling group (at most agent_desired_capacity)."
  type        = number
  default     = 3
}

variable "agent_max_size" {
  description = "Maximum number of agents in the autoscaling group (must be at least agent_desired_capacity; an instance refresh may add none above it)."
  type        = number
  default     = 6
}

variable "agent_desired_capacity" {
  description = "Number of agents to run (between agent_min_size and agent_max_size). Three spreads one agent per availability zone."
  type        = number
  default     = 3
}

variable "agent_ami_id" {
  description = "AMI of the agents; null follows the latest Amazon Linux 2023 (a new release rolls the agents at the next apply). Pin it to choose when they move."
  type        = string
  default     = null
}

variable "agent_root_volume_size" {
  description = "Size in GiB of each agent's encrypted root volume, which also holds the block cache (cache_disk, 2 GiB by default) under /var/lib/silt."
  type        = number
  default     = 30
}

variable "ebs_kms_key_arn" {
  description = "ARN of a KMS key for the agents' and etcd members' EBS volumes. Null uses the account's default EBS encryption key (volumes are always encrypted). The key policy must allow the EC2 Auto Scaling service-linked role (AWSServiceRoleForAutoScaling) to use the key (kms:CreateGrant, Encrypt, Decrypt, ReEncrypt*, GenerateDataKey*, DescribeKey), or agents fail to launch. Changing it later replaces the etcd data volumes, which the module refuses (README, \"Upgrade\")."
  type        = string
  default     = null
}

variable "kafka_port" {
  description = "Kafka listener port of the agents and the load balancer."
  type        = number
  default     = 9092
}

variable "http_port" {
  description = "Port of the agents' /health and /metrics endpoint (--http); the load balancer's health checks use it. Reachable only from the load balancer."
  type        = number
  default     = 9644
}

variable "enable_http_api" {
  description = "Serve silt's HTTP API on the agents (--rest) and on the load balancer's port 8082 (the module's default is false; the example turns it on)."
  type        = bool
  default     = true
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
}

variable "logs_kms_key_arn" {
  description = "ARN of a KMS key encrypting the CloudWatch log groups. Null uses CloudWatch Logs' own encryption. The key policy must allow the logs service principal of the region."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------

variable "etcd_instance_type" {
  description = "EC2 instance type of the three etcd members (non-burstable types keep commit latency steady)."
  type        = string
  default     = "m7g.large"
}

variable "etcd_volume_size" {
  description = "Size in GiB of each etcd member's persistent data volume (gp3, encrypted). Must comfortably exceed etcd_quota_backend_bytes."
  type        = number
  default     = 20
}

variable "etcd_version" {
  description = "etcd release installed on the members (used to build the default etcd_release_url)."
  type        = string
  default     = "3.5.17"
}

variable "etcd_release_url" {
  description = "s3:// or https:// URL of the etcd release tarball (etcd-vX.Y.Z-linux-ARCH.tar.gz). Empty uses the pinned GitHub release of etcd_version for the architecture. For an s3:// URL the bucket's policy must grant the etcd role (output etcd_role_arn) s3:GetObject."
  type        = string
  default     = ""
}

variable "etcd_release_sha256" {
  description = "SHA-256 of the etcd release tarball; when set, the members refuse a download that does not match."
  type        = string
  default     = ""
}

variable "etcd_dns_zone" {
  description = "Name of the Route 53 private hosted zone holding one record per etcd member (etcd-1.<zone>, ...). Empty uses <cluster_name>.silt.internal."
  type        = string
  default     = ""
}

variable "etcd_client_tls" {
  description = "Serve etcd's client port (2379) over TLS with client certificate authentication: the module issues one client certificate (CN silt) from the etcd CA for the agents and the Lambda functions. False serves 2379 as plain HTTP inside the VPC, protected only by the etcd security group. Peer traffic (2380) is always TLS."
  type        = bool
  default     = true
}

variable "etcd_ca_cert_pem" {
  description = "PEM certificate of a CA to sign the etcd member certificates with. Null generates a CA in Terraform (its key is then in the state). A .tfvars file cannot read files: pass it as TF_VAR_etcd_ca_cert_pem=\"$(cat ca.pem)\"."
  type        = string
  default     = null
}

variable "etcd_ca_private_key_pem" {
  description = "PEM private key of etcd_ca_cert_pem (required with it, and only with it); pass it as TF_VAR_etcd_ca_private_key_pem=\"$(cat ca-key.pem)\" rather than in a file."
  type        = string
  default     = null
  sensitive   = true
}

variable "etcd_initial_cluster_state" {
  description = "etcd --initial-cluster-state written to a member's /etc/etcd/etcd.env at its first boot. It only matters for an empty data volume: \"new\" for the first apply (the three members bootstrap together); \"existing\" to replace a member whose volume was lost, after `etcdctl member add` (README, \"Upgrade\"). Members with data ignore it, and changing it does not touch running members."
  type        = string
  default     = "new"
}

variable "etcd_quota_backend_bytes" {
  description = "etcd --quota-backend-bytes: the size at which etcd raises NOSPACE and refuses writes. silt checkpoints and deletes its log, so the live data stays small; 8 GiB is etcd's recommended maximum."
  type        = number
  default     = 8589934592
}

variable "etcd_auto_compaction_retention" {
  description = "etcd --auto-compaction-retention in revisions (--auto-compaction-mode revision). silt compacts its own history after checkpoints, so a modest number of revisions is enough for watches to catch up."
  type        = number
  default     = 10000
}

variable "etcd_snapshot_prefix" {
  description = "Key prefix in the bucket for the etcd snapshots (<prefix>/<member>/<date>.db). Must differ from bucket_prefix, and neither may be a prefix of the other."
  type        = string
  default     = "etcd-snapshots"
}

variable "etcd_snapshot_schedule" {
  description = "systemd OnCalendar expression of the etcd snapshot timer on each member (default every 30 minutes)."
  type        = string
  default     = "*:0/30"
}

variable "etcd_snapshot_retention_days" {
  description = "Days after which a lifecycle rule deletes etcd snapshots (only under etcd_snapshot_prefix; silt's own objects never expire)."
  type        = number
  default     = 14
}

# ---------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------

variable "enable_lambda" {
  description = "Create the silt-http and silt-jobs Lambda functions."
  type        = bool
  default     = true
}

variable "silt_http_zip_url" {
  description = "s3://bucket/key.zip of the silt-http function (target/lambda/silt-http/bootstrap.zip from `cargo lambda build --release --arm64 --output-format zip -p silt-lambda`), in a bucket of the deployment's region. Required when enable_lambda is true."
  type        = string
  default     = null
}

variable "silt_jobs_zip_url" {
  description = "s3://bucket/key.zip of the silt-jobs function (target/lambda/silt-jobs/bootstrap.zip), in a bucket of the deployment's region. Required when enable_lambda is true."
  type        = string
  default     = null
}

variable "jobs_schedule" {
  description = "EventBridge schedule expression of silt-jobs (retention, compaction, cleaner, table export and object GC passes)."
  type        = string
  default     = "rate(5 minutes)"
}

variable "jobs_reserved_concurrency" {
  description = "Reserved concurrency of silt-jobs. Null reserves none: the passes take etcd locks, so overlapping runs are safe. 1 keeps runs from overlapping but takes one execution from the account's pool, which AWS refuses when it would leave fewer than 10 unreserved (as in new accounts with a limit of 10)."
  type        = number
  default     = null
}

variable "silt_http_memory_mb" {
  description = "Memory of silt-http in MB (at least 512)."
  type        = number
  default     = 1024
}

variable "silt_jobs_memory_mb" {
  description = "Memory of silt-jobs in MB (compaction holds an object of up to compaction_object_bytes twice)."
  type        = number
  default     = 1024
}

variable "silt_jobs_timeout_seconds" {
  description = "Timeout of silt-jobs in seconds; each job gets a share of it (at most jobs_pass_time)."
  type        = number
  default     = 300
}

variable "lambda_environment" {
  description = "Extra SILT_* environment variables for both functions (for example SILT_LOG = \"debug\"). The module sets SILT_ETCD, SILT_BUCKET and SILT_CLUSTER itself."
  type        = map(string)
  default     = {}
}
