# sfmirror on Google Cloud (see README, "Deploy"): Cloud Run with one instance always running and its
# CPU always allocated (the CDC stream, the backfill scheduler and the BigQuery drain work between
# requests), Cloud SQL for PostgreSQL through DATABASE_URL (the embedded PostgreSQL would live on
# Cloud Run's in-memory disk and vanish with the instance), the BigQuery dataset, and Secret Manager
# for every secret. The service account gets only what it uses.

locals {
  operator_secrets = var.secrets
  datasets = concat([var.bigquery_dataset], [for a in var.other_org_aliases : "${var.bigquery_dataset}_${a}"])
}

resource "google_project_service" "apis" {
  for_each           = toset(["run.googleapis.com", "sqladmin.googleapis.com", "secretmanager.googleapis.com", "bigquery.googleapis.com"])
  service            = each.value
  disable_on_destroy = false
}

resource "google_service_account" "sfmirror" {
  account_id   = "sfmirror"
  display_name = "sfmirror service"
}

# --- PostgreSQL -------------------------------------------------------------------------------

resource "google_sql_database_instance" "sfmirror" {
  name                = "sfmirror"
  database_version    = "POSTGRES_17"
  region              = var.region
  deletion_protection = true
  settings {
    tier              = var.db_tier
    availability_type = "REGIONAL"
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
    ip_configuration {
      # No public address: Cloud Run reaches it through the Cloud SQL connector socket.
      ipv4_enabled = false
      ssl_mode     = "ENCRYPTED_ONLY"
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_sql_database" "sfmirror" {
  name     = "sfmirror"
  instance = google_sql_database_instance.sfmirror.name
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "google_sql_user" "sfmirror" {
  name     = "sfmirror"
  instance = google_sql_database_instance.sfmirror.name
  password = random_password.db.result
}

# DATABASE_URL through the Cloud SQL socket that Cloud Run mounts under /cloudsql.
resource "google_secret_manager_secret" "database_url" {
  secret_id = "sfmirror-database-url"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "database_url" {
  secret      = google_secret_manager_secret.database_url.id
  secret_data = "postgres://sfmirror:${random_password.db.result}@localhost/sfmirror?host=/cloudsql/${google_sql_database_instance.sfmirror.connection_name}"
}

# --- Secrets the operator fills in ----------------------------------------------------------------

resource "google_secret_manager_secret" "operator" {
  for_each  = local.operator_secrets
  secret_id = each.value
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "operator" {
  for_each  = local.operator_secrets
  secret_id = google_secret_manager_secret.operator[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sfmirror.email}"
}

resource "google_secret_manager_secret_iam_member" "database_url" {
  secret_id = google_secret_manager_secret.database_url.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.sfmirror.email}"
}

# --- BigQuery -----------------------------------------------------------------------------------

resource "google_bigquery_dataset" "org" {
  for_each   = toset(local.datasets)
  dataset_id = each.value
  location   = var.region
  depends_on = [google_project_service.apis]
}

# Tables, views and rows inside sfmirror's datasets only (no project-wide data role).
resource "google_bigquery_dataset_iam_member" "editor" {
  for_each   = toset(local.datasets)
  dataset_id = google_bigquery_dataset.org[each.key].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.sfmirror.email}"
}

# Query jobs (the seeding of a rebuilt table) run in the project.
resource "google_project_iam_member" "bigquery_jobs" {
  project = var.project
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.sfmirror.email}"
}

resource "google_project_iam_member" "cloudsql_client" {
  project = var.project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.sfmirror.email}"
}

# --- Cloud Run ----------------------------------------------------------------------------------

resource "google_cloud_run_v2_service" "sfmirror" {
  name     = "sfmirror"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"

  template {
    service_account = google_service_account.sfmirror.email
    # One instance always up: the CDC stream, the scheduler and the drain run between requests.
    scaling {
      min_instance_count = 1
      max_instance_count = var.max_instances
    }
    max_instance_request_concurrency = 80
    timeout                          = "300s"

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.sfmirror.connection_name]
      }
    }

    containers {
      image = var.image
      args  = ["serve"]
      ports {
        container_port = 8080
      }
      resources {
        # CPU always allocated: without it, background work stalls between requests.
        cpu_idle          = false
        startup_cpu_boost = true
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
      }
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
      env {
        name  = "HOST"
        value = "0.0.0.0"
      }
      env {
        name  = "BIGQUERY_PROJECT"
        value = var.project
      }
      env {
        name  = "BIGQUERY_DATASET"
        value = var.bigquery_dataset
      }
      env {
        name  = "SF_LOGIN_URL"
        value = var.sf_login_url
      }
      env {
        name  = "SF_CLIENT_ID"
        value = var.sf_client_id
      }
      env {
        name = "DATABASE_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.database_url.secret_id
            version = "latest"
          }
        }
      }
      dynamic "env" {
        for_each = local.operator_secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.operator[env.key].secret_id
              version = "latest"
            }
          }
        }
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
        period_seconds    = 5
        failure_threshold = 24
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 30
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.operator,
    google_secret_manager_secret_iam_member.database_url,
    google_secret_manager_secret_version.database_url,
  ]
}

# Salesforce calls in without Google credentials: pushes are authenticated by their signatures,
# the read and operator APIs by their bearer tokens.
resource "google_cloud_run_v2_service_iam_member" "public" {
  name     = google_cloud_run_v2_service.sfmirror.name
  location = google_cloud_run_v2_service.sfmirror.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}
