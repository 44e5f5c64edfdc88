output "bootstrap_address" {
  description = "Kafka bootstrap.servers value."
  value       = module.silt.bootstrap_address
}

output "http_url" {
  description = "silt HTTP API through the load balancer (null when disabled)."
  value       = module.silt.http_url
}

output "silt_http_function_url" {
  description = "Function URL of silt-http (IAM auth)."
  value       = module.silt.silt_http_function_url
}

output "bucket_name" {
  description = "The bucket holding silt's data."
  value       = module.silt.bucket_name
}

output "etcd_endpoints" {
  description = "etcd client endpoints."
  value       = module.silt.etcd_endpoints
}

output "agent_autoscaling_group_name" {
  description = "Autoscaling group of the agents."
  value       = module.silt.agent_autoscaling_group_name
}

output "etcd_instance_ids" {
  description = "etcd member instances, by member name."
  value       = module.silt.etcd_instance_ids
}
