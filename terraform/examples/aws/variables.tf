variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "Name of the silt cluster (lower-case letters, digits, '-'; at most 20 characters)."
  type        = string
  default     = "prod"
}

variable "bucket_name" {
  description = "Globally unique name of the S3 bucket the module creates."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the new VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "allowed_cidrs" {
  description = "CIDR blocks allowed to reach Kafka (9092) and the HTTP API (8082). The default is the new VPC's own range."
  type        = list(string)
  default     = ["10.40.0.0/16"]
}

variable "silt_artifact_url" {
  description = "s3:// or https:// URL of the silt binary (or a .tar.gz holding it) for Linux arm64."
  type        = string
}

variable "agent_ami_id" {
  description = "AMI of the agents; null follows the latest Amazon Linux 2023 (a new release rolls the agents at the next apply). Pin it to choose when they move."
  type        = string
  default     = null
}

variable "enable_http_api" {
  description = "Serve silt's HTTP API on the agents and on the load balancer's port 8082."
  type        = bool
  default     = true
}

variable "enable_lambda" {
  description = "Create the silt-http and silt-jobs Lambda functions."
  type        = bool
  default     = true
}

variable "silt_http_zip_url" {
  description = "s3://bucket/key.zip of the silt-http function (bootstrap from `cargo lambda build --release --arm64`)."
  type        = string
  default     = null
}

variable "silt_jobs_zip_url" {
  description = "s3://bucket/key.zip of the silt-jobs function."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
