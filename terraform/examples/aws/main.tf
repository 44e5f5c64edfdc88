# A production-shaped silt cluster: three agents, three etcd members, the
# bucket, an internal load balancer and the Lambda functions, in a new VPC
# (or an existing one with vpc_id). Every input of the module is a variable
# of this configuration (variables.tf, terraform.tfvars.example), with the
# module's default unless noted there, so nothing needs editing here.

terraform {
  required_version = ">= 1.2"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "managed-by" = "terraform"
      "project"    = "silt"
    }
  }
}

module "silt" {
  source = "../../modules/silt"

  # Identity
  cluster_name = var.cluster_name
  tags         = var.tags

  # Network
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  private_route_table_ids    = var.private_route_table_ids
  create_s3_gateway_endpoint = var.create_s3_gateway_endpoint
  vpc_cidr                   = var.vpc_cidr
  availability_zones         = var.availability_zones
  enable_nat_gateway         = var.enable_nat_gateway
  allowed_cidrs              = var.allowed_cidrs

  # Bucket
  bucket_name          = var.bucket_name
  bucket_prefix        = var.bucket_prefix
  bucket_force_destroy = var.bucket_force_destroy
  s3_kms_key_arn       = var.s3_kms_key_arn

  # Agents
  silt_artifact_url      = var.silt_artifact_url
  architecture           = var.architecture
  agent_instance_type    = var.agent_instance_type
  agent_min_size         = var.agent_min_size
  agent_max_size         = var.agent_max_size
  agent_desired_capacity = var.agent_desired_capacity
  agent_ami_id           = var.agent_ami_id
  agent_root_volume_size = var.agent_root_volume_size
  ebs_kms_key_arn        = var.ebs_kms_key_arn
  kafka_port             = var.kafka_port
  http_port              = var.http_port
  enable_http_api        = var.enable_http_api
  nlb_internal           = var.nlb_internal
  nlb_subnet_ids         = var.nlb_subnet_ids
  enable_ssm             = var.enable_ssm
  log_retention_days     = var.log_retention_days
  logs_kms_key_arn       = var.logs_kms_key_arn

  # etcd
  etcd_instance_type             = var.etcd_instance_type
  etcd_volume_size               = var.etcd_volume_size
  etcd_version                   = var.etcd_version
  etcd_release_url               = var.etcd_release_url
  etcd_release_sha256            = var.etcd_release_sha256
  etcd_dns_zone                  = var.etcd_dns_zone
  etcd_client_tls                = var.etcd_client_tls
  etcd_ca_cert_pem               = var.etcd_ca_cert_pem
  etcd_ca_private_key_pem        = var.etcd_ca_private_key_pem
  etcd_initial_cluster_state     = var.etcd_initial_cluster_state
  etcd_quota_backend_bytes       = var.etcd_quota_backend_bytes
  etcd_auto_compaction_retention = var.etcd_auto_compaction_retention
  etcd_snapshot_prefix           = var.etcd_snapshot_prefix
  etcd_snapshot_schedule         = var.etcd_snapshot_schedule
  etcd_snapshot_retention_days   = var.etcd_snapshot_retention_days

  # Lambda
  enable_lambda             = var.enable_lambda
  silt_http_zip_url         = var.silt_http_zip_url
  silt_jobs_zip_url         = var.silt_jobs_zip_url
  jobs_schedule             = var.jobs_schedule
  jobs_reserved_concurrency = var.jobs_reserved_concurrency
  silt_http_memory_mb       = var.silt_http_memory_mb
  silt_jobs_memory_mb       = var.silt_jobs_memory_mb
  silt_jobs_timeout_seconds = var.silt_jobs_timeout_seconds
  lambda_environment        = var.lambda_environment
}
