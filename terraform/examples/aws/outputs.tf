output "bootstrap_address" {
  description = "Kafka bootstrap address (bootstrap.servers): the load balancer's DNS name and the Kafka port. Clients then connect to the agents' private addresses."
  value       = module.silt.bootstrap_address
}

output "http_url" {
  description = "Base URL of silt's HTTP API through the load balancer (port 8082), or null when enable_http_api is false."
  value       = module.silt.http_url
}

output "silt_http_function_url" {
  description = "Function URL of silt-http (AWS_IAM auth: sign requests with SigV4), or null when enable_lambda is false."
  value       = module.silt.silt_http_function_url
}

output "bucket_name" {
  description = "Name of the bucket holding silt's data (under bucket_prefix) and the etcd snapshots."
  value       = module.silt.bucket_name
}

output "bucket_url" {
  description = "The --bucket / SILT_BUCKET value the agents and functions use."
  value       = module.silt.bucket_url
}

output "etcd_endpoints" {
  description = "etcd client endpoints, comma-separated (the --etcd / SILT_ETCD value)."
  value       = module.silt.etcd_endpoints
}

output "etcd_member_ips" {
  description = "Private IP addresses of the etcd members, by member name (stable across instance replacement)."
  value       = module.silt.etcd_member_ips
}

output "etcd_instance_ids" {
  description = "EC2 instance IDs of the etcd members, by member name."
  value       = module.silt.etcd_instance_ids
}

output "etcd_ca_cert_pem" {
  description = "PEM certificate of the CA that signed the etcd member certificates."
  value       = module.silt.etcd_ca_cert_pem
}

output "agent_autoscaling_group_name" {
  description = "Name of the agents' autoscaling group (for instance refreshes)."
  value       = module.silt.agent_autoscaling_group_name
}

output "agent_security_group_id" {
  description = "Security group of the agents."
  value       = module.silt.agent_security_group_id
}

output "vpc_id" {
  description = "VPC the cluster runs in."
  value       = module.silt.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets of the agents, etcd members and functions."
  value       = module.silt.private_subnet_ids
}

output "silt_jobs_function_name" {
  description = "Name of the silt-jobs function, or null when enable_lambda is false."
  value       = module.silt.silt_jobs_function_name
}

output "agent_role_arn" {
  description = "IAM role of the agents. Its S3 rights cover only silt's bucket and prefix: for an s3:// silt_artifact_url, grant this role s3:GetObject in the artifact bucket's policy."
  value       = module.silt.agent_role_arn
}

output "etcd_role_arn" {
  description = "IAM role of the etcd members (may only write snapshots). For an s3:// etcd_release_url, grant it s3:GetObject in that bucket's policy."
  value       = module.silt.etcd_role_arn
}
