# A production-shaped silt cluster in a new VPC: three agents, three etcd
# members, the bucket, an internal load balancer and the Lambda functions.

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

  cluster_name = var.cluster_name
  bucket_name  = var.bucket_name

  # New VPC over three zones with one NAT gateway.
  vpc_cidr           = var.vpc_cidr
  enable_nat_gateway = true

  # Kafka (and the HTTP API) reachable from inside the VPC only.
  allowed_cidrs = var.allowed_cidrs

  silt_artifact_url      = var.silt_artifact_url
  agent_ami_id           = var.agent_ami_id
  agent_instance_type    = "c7g.large"
  agent_min_size         = 3
  agent_desired_capacity = 3
  agent_max_size         = 6

  etcd_instance_type = "m7g.large"
  etcd_volume_size   = 20

  enable_http_api = var.enable_http_api

  enable_lambda     = var.enable_lambda
  silt_http_zip_url = var.silt_http_zip_url
  silt_jobs_zip_url = var.silt_jobs_zip_url

  tags = var.tags
}
