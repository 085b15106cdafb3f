variable "project" {
  description = "Google Cloud project id"
  type        = string
}

variable "region" {
  description = "Region of Cloud Run, Cloud SQL and the BigQuery dataset's location"
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "The sfmirror image (built from the repository's Dockerfile), e.g. europe-west1-docker.pkg.dev/PROJECT/sfmirror/sfmirror:0.1.0"
  type        = string
}

variable "bigquery_dataset" {
  description = "BIGQUERY_DATASET: the dataset of the org configured by environment"
  type        = string
  default     = "salesforce"
}

variable "other_org_aliases" {
  description = "Aliases of orgs connected by OAuth: each gets the dataset <bigquery_dataset>_<alias> here, so sfmirror needs no project-wide BigQuery role"
  type        = list(string)
  default     = []
}

variable "max_instances" {
  description = "Upper bound of Cloud Run instances (they share the database: one subscribes per org, all serve requests)"
  type        = number
  default     = 3
}

variable "db_tier" {
  description = "Cloud SQL machine tier"
  type        = string
  default     = "db-custom-1-3840"
}

variable "sf_login_url" {
  description = "SF_LOGIN_URL"
  type        = string
  default     = "https://login.salesforce.com"
}

variable "sf_client_id" {
  description = "SF_CLIENT_ID: the External Client App's consumer key (not a secret)"
  type        = string
  default     = ""
}

variable "secrets" {
  description = "Environment variable -> Secret Manager secret id. The operator adds each value (gcloud secrets versions add ID --data-file=-), so none is in Terraform's state; drop the ones a deployment does not use (e.g. SF_REFRESH_TOKEN with JWT bearer)"
  type        = map(string)
  default = {
    SFMIRROR_INGEST_SECRETS = "sfmirror-ingest-secrets"
    SFMIRROR_ADMIN_TOKEN    = "sfmirror-admin-token"
    SFMIRROR_ENCRYPTION_KEY = "sfmirror-encryption-key"
    SF_CLIENT_SECRET        = "sfmirror-sf-client-secret"
    SF_REFRESH_TOKEN        = "sfmirror-sf-refresh-token"
  }
}
