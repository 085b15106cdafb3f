output "url" {
  description = "sfmirror's HTTPS address: the Named Credential's URL and the OAuth callback's host"
  value       = google_cloud_run_v2_service.sfmirror.uri
}

output "service_account" {
  value = google_service_account.sfmirror.email
}

output "secrets_to_fill" {
  description = "Add a version to each: gcloud secrets versions add NAME --data-file=-"
  value       = [for s in google_secret_manager_secret.operator : s.secret_id]
}
